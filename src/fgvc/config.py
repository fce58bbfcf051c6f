"""Typed experiment settings: YAML files plus ``key=value`` overrides, validated before any work.

A config file is a YAML mapping of the sections below. ``_base_: other.yaml`` (or a list) merges
other files first, so a paper's experiment grid shares one recipe. Overrides use dotted keys:
``fgvc train configs/quickstart.yaml optim.lr=0.1 data.batch_size=64``; values are parsed as YAML.
Any unknown key, wrong type or impossible value raises ``ConfigError`` with one line naming the key.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Annotated, Literal

import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fgvc.errors import ConfigError

FORMAT_NAMES = ("inat2017", "inat2018", "inat2021", "yfcc", "cub", "cars", "aircraft", "flowers",
                "cifar10", "cifar100", "cinic10", "folder", "manifest")
LEVELS = ("variant", "family", "manufacturer", "fine", "coarse")  # aircraft's, then CIFAR-100's


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class JointSource(Section):
    """One dataset of ``data.joint`` (the erudite setting): its own files, splits and label options."""

    format: Literal[FORMAT_NAMES]  # type: ignore[valid-type]
    root: str = Field(min_length=1)  # dataset folder (or manifest file)
    name: str | None = None  # prefixes its class names ("cub/<class>"); defaults to the format name
    train_split: str | None = None  # as data.train_split, for this dataset
    val_split: str | None = None
    test_split: str | None = None
    level: Literal[LEVELS] | None = None  # type: ignore[valid-type]  # as data.level, for this dataset
    crop_banner: bool = True  # FGVC-Aircraft: cut the 20-px copyright banner

    @property
    def dataset_name(self) -> str:
        return self.name or self.format


class DataConfig(Section):
    # shards: the folder `fgvc data shard` wrote (data.root); its splits are those resolved when written
    format: Literal[FORMAT_NAMES + ("shards",)] = "folder"  # type: ignore[valid-type]
    root: str = ""  # dataset folder (or manifest file); relative paths are relative to the cwd
    name: str | None = None  # shown in reports; defaults to the format name
    train_split: str | None = None  # None: the split the papers train on (the reader's default)
    val_split: str | None = None  # None: reader default; "holdout": always hold out from train
    test_split: str | None = None  # None: reader default; never used for model selection
    val_fraction: float = Field(0.1, gt=0, lt=1)  # size of the stratified hold-out
    test_fraction: float = Field(0.2, gt=0, lt=1)  # hold-out used as test only if there is no test split
    holdout_seed: int = 0
    # label level; None: the finest (aircraft variant|family|manufacturer, cifar100 fine|coarse)
    level: Literal[LEVELS] | None = None  # type: ignore[valid-type]
    crop_banner: bool = True  # FGVC-Aircraft: cut the 20-px copyright banner
    metadata: list[Literal["geo", "temporal"]] = []  # geo-temporal inputs the model reads
    bad_metadata: Literal["missing", "error"] = "missing"  # out-of-range/unparseable values
    bad_records: Literal["error", "skip"] = "error"  # malformed annotation records
    bad_images: Literal["error", "skip"] = "error"  # unreadable or truncated image files
    # images with more pixels are bad images (decompression bombs); default: PIL's own limit
    max_image_pixels: int = Field(Image.MAX_IMAGE_PIXELS, ge=1)
    # do the listed image files exist: every one (slow for millions), a seeded sample of a few
    # thousand (the log extrapolates), or none; a missing file met in training is then a bad image
    check_images: Literal["all", "sample", "none"] = "sample"
    cache: bool = True  # parse annotation files once into a memory-mapped sample index (large formats)
    cache_dir: str | None = None  # where; None: $FGVC_CACHE_DIR, else ~/.cache/fgvc
    image_size: int = Field(224, ge=16)
    crop_pct: float = Field(0.875, gt=0, le=1)  # eval: resize to image_size / crop_pct, centre crop
    resize: int | None = Field(None, ge=16)  # square resize first (PMG/RMG-PMSI 512): train random crop, eval centre
    crop_padding: int = Field(0, ge=0)  # with resize: zero padding (px) around the random crop (PMG's release: 8)
    min_scale: float = Field(0.08, gt=0, le=1)  # random-resized-crop scale range (min, 1)
    hflip: bool = True
    # per-channel normalisation of the [0, 1] pixels; ImageNet's by default (PMG's release: 0.5 and 0.5)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (
        0.229, 0.224, 0.225)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)  # None: 2 x batch_size
    num_workers: int = Field(2, ge=0)
    shuffle_buffer: int = Field(1000, ge=1)  # shards: samples (encoded bytes) each training stream shuffles among
    # The erudite setting: one model on the union of several datasets' classes, each batch balanced
    # across them. When non-empty, data.format/root/name/*_split/level/crop_banner are not used: each
    # source keeps its own; the other fields here (hold-out, image size, batch, ...) are shared.
    joint: list[JointSource] = []
    joint_target: Literal["class", "dataset"] = "class"  # dataset: learn which dataset (Single's coarse classifier)

    @model_validator(mode="after")
    def _root_given(self) -> DataConfig:
        if self.joint:
            names = [source.dataset_name for source in self.joint]
            if len(names) < 2:
                raise ValueError(f"data.joint needs at least 2 datasets (got {len(names)}): for one dataset "
                                 "set data.format and data.root instead")
            twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
            if twice is not None:
                raise ValueError(f"data.joint has two datasets named '{twice}': give each its own "
                                 "data.joint[i].name (the name defaults to the format)")
            if self.format == "shards":
                raise ValueError("data.format=shards with data.joint: joint training needs balanced batches "
                                 "(random access), which streamed shards do not give; train from the files")
        elif not self.root:
            raise ValueError("data.root is required: the dataset folder (or manifest file)")
        if self.crop_padding and not self.resize:
            raise ValueError("data.crop_padding pads the random crop taken after the square resize: set data.resize "
                             "too (PMG's release: resize 550, crop 448, padding 8)")
        return self


FUSION_NAMES = ("none", "concat", "add", "mul", "dynamic_mlp", "same_concat", "same_add", "same_mul",
                "attn_img_q", "attn_meta_q", "attn_cat")


class FusionConfig(Section):
    """How geo-temporal metadata joins the image feature (Dynamic MLP paper and its baselines)."""

    name: Literal[FUSION_NAMES] = "none"  # type: ignore[valid-type]  # none = image-only
    compensated: bool = False  # concat/add/mul with extra MLP layers matching Dynamic MLP's size
    variant: Literal["a", "b", "c"] = "c"  # Dynamic MLP variant
    d: int = Field(256, ge=1)  # Dynamic MLP reduced width (and the location encoder's output)
    h: int = Field(64, ge=1)  # Dynamic MLP hidden width of the recursive blocks
    n: int = Field(2, ge=1)  # Dynamic MLP recursions
    cat_input: Literal["both", "image", "weight"] = "both"  # variant C: branches fed cat(x, z_e) (Table 5)
    loc_width: int = Field(256, ge=1)  # location encoder width
    loc_res_layers: int = Field(4, ge=0)  # location encoder residual layers
    loc_dropout: float = Field(0.5, ge=0, lt=1)


class MultiStageConfig(Section):
    """PMG / RMG-PMSI heads on the last backbone stages (used when ``model.head=multi_stage``)."""

    stages: int = Field(3, ge=1, le=5)  # StageNum: how many of the deepest stages get a classifier
    hidden: int = Field(512, ge=1)  # smooth-conv, mutual-vector and classifier hidden width
    channels: int | None = Field(None, ge=1)  # c per stage; None: half the deepest map's channels
    interaction: bool = True  # the M of RMG-PMSI (multi-stage interaction); False: PMG's heads
    bn_momentum: float = Field(0.1, gt=0, le=1)  # smooth-conv BatchNorm momentum (PyTorch's; both releases: 0.01)


class EruditeConfig(Section):
    """The erudite model's head (used when ``model.head=erudite``; needs ``data.joint``)."""

    experts: bool = True  # dataset experts + re-fusion gate (Baseline+); False: max pooling + joint classifier
    attention: bool = True  # multi-head spatial attention before the experts (Baseline++ / Ours)
    expert_channels: int | None = Field(None, ge=1)  # C'; None: the backbone's channels (paper; released code: 512)
    heads: int = Field(8, ge=1)  # spatial attention groups
    hierarchical: bool = False  # the hierarchical multi-task baseline: dataset, then class (ignores the above)
    # Ours_PMG: PMG's per-stage classifiers (model.multi_stage, trained in progressive phases with
    # method.augment) under the erudite head, which replaces PMG's concatenated-stage classifier
    multi_stage: bool = False


class ModelConfig(Section):
    backbone: str = "resnet50"  # any timm model name
    # None: random init; "hub": timm's hub weights; "synthetic": the shipped weights of `fgvc pretrain`
    # (synthetic upstream set, offline); else a local file
    pretrained: str | None = None
    drop_rate: float = Field(0.0, ge=0, lt=1)  # dropout before the classifier
    # multi_stage: PMG / RMG-PMSI classifiers per stage; erudite: experts, gate, attention (joint data)
    head: Literal["linear", "multi_stage", "erudite"] = "linear"
    fusion: FusionConfig = FusionConfig()
    multi_stage: MultiStageConfig = MultiStageConfig()
    erudite: EruditeConfig = EruditeConfig()


class MethodConfig(Section):
    # priors: PriorsNet baseline (no image training); progressive: PMG / RMG-PMSI phases;
    # erudite: L_all with per-dataset auxiliary losses, optionally meta-learned attention
    # ctc: contrastive temporal coding (instance discrimination, then NCE against a frozen snapshot)
    name: Literal["supervised", "priors", "progressive", "erudite", "ctc"] = "supervised"
    image_checkpoint: str | None = None  # priors: the image-only model combined with the prior at test time
    priors_epochs: int = Field(30, ge=1)  # PriorsNet recipe of the geo_prior code: Adam 5e-4, x0.98/epoch
    priors_batch_size: int = Field(1024, ge=1)
    priors_lr: float = Field(5e-4, gt=0)
    priors_balance: Literal["class", "instance"] = "class"  # class: at most 100 samples per class per epoch
    # progressive: what stage n's phase sees. rmg: recursive mosaic r = S-n+1 (the R of RMG-PMSI);
    # jigsaw: PMG's 2^(S-n+1) x 2^(S-n+1) jigsaw; cutmix / mixup / snapmix: a fresh mix per phase
    # (Table IV); none: the original image
    augment: Literal["rmg", "jigsaw", "cutmix", "mixup", "snapmix", "none"] = "rmg"
    # progressive rmg / jigsaw: per_image = a fresh uniform patch order for every image; release = one
    # order for the whole batch, drawn as both released generators draw it (every patch moves)
    patch_order: Literal["per_image", "release"] = "per_image"
    concat_loss_weight: float = Field(1.0, gt=0)  # progressive: the last (whole-image) phase's loss x this (releases: 2)
    mix_alpha: float = Field(1.0, gt=0)  # progressive with cutmix / mixup / snapmix: Beta(alpha, alpha)
    # erudite: how the attention parameters learn. maml: stage II with the meta loss (Ours);
    # pcgrad: stage II with PCGrad over the datasets (Ours_PCGrad); none: with everything else
    meta: Literal["maml", "pcgrad", "none"] = "maml"
    meta_lr: float = Field(0.01, gt=0)  # erudite: the inner step α of θ' = θ - α ∇θ L_all(meta-train)
    # progressive: True = one backward and optimiser step per phase (the P of RMG-PMSI); False = the
    # phases' losses summed into one step
    phases: bool = True
    # ctc (docs/methods/ctc.md; defaults: the paper's CIFAR-100 "transferability" setting of the release)
    ctc_alpha: float = Field(0.5, ge=0)  # stage 1: CE + alpha * instance discrimination (paper: 0.5 or 0.1)
    ctc_beta: float = Field(1.0, ge=0)  # stage 2: CE + beta * NCE against the snapshot
    ctc_instance_temperature: float = Field(0.1, gt=0)  # stage 1 tau (paper: 0.1 or 0.5)
    ctc_instance_momentum: float = Field(0.9, ge=0, lt=1)  # stage 1 memory-bank momentum
    ctc_temperature: float = Field(0.1, gt=0)  # stage 2 tau (paper: 0.1 or 0.4)
    ctc_momentum: float = Field(0.9, ge=0, lt=1)  # stage 2 memory-bank momentum
    ctc_negatives: int = Field(16384, ge=1)  # K uniform draws per sample (at most N_train - 1)
    ctc_dim: int = Field(128, ge=1)  # embedding width
    ctc_switch_epoch: int | None = Field(None, ge=1)  # first stage-2 epoch (0-based); None: 2/3 of schedule.epochs
    ctc_refresh_bank: bool = True  # at the switch, fill the banks with the snapshot's embeddings
    ctc_weight_decay_factor: float = Field(2.0, ge=0)  # optim.weight_decay x this in stage 1


class OptimConfig(Section):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.04, gt=0)  # learning rate of the new layers (head, fusion)
    base_batch_size: int | None = Field(None, ge=1)  # if set: lr scales by batch_size/base_batch_size
    backbone_lr: float | None = Field(None, gt=0)  # None: same as lr (both scaled alike)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW


class ScheduleConfig(Section):
    epochs: int = Field(90, ge=1)
    warmup_epochs: float = Field(2, ge=0)  # linear warm-up from warmup_factor * lr
    warmup_factor: float = Field(0.01, gt=0, le=1)
    min_lr_factor: float = Field(0.0, ge=0, le=1)  # cosine ends at min_lr_factor * lr
    freeze_backbone_epochs: int = Field(0, ge=0)  # train only the new layers at first
    # the frozen backbone's BatchNorm: eval = running statistics used and kept; train = batch statistics
    # used and running ones updated, only the weights wait (the RMG-PMSI release)
    frozen_backbone_bn: Literal["eval", "train"] = "eval"
    per_epoch: bool = False  # the rate changes once per epoch, not per step (PMG's release); never reaches 0
    cosine_epochs: float | None = Field(None, gt=0)  # the cosine ends here (epochs); None: schedule.epochs

    @model_validator(mode="after")
    def _warmup_fits(self) -> ScheduleConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"schedule.warmup_epochs ({self.warmup_epochs}) must be below "
                             f"schedule.epochs ({self.epochs})")
        if self.per_epoch and self.warmup_epochs != int(self.warmup_epochs):
            raise ValueError(f"schedule.per_epoch changes the rate once per epoch: schedule.warmup_epochs must be "
                             f"a whole number (got {self.warmup_epochs})")
        return self


class TrainConfig(Section):
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    mixup_alpha: float = Field(0.0, ge=0)  # 0 disables
    cutmix_alpha: float = Field(0.0, ge=0)  # 0 disables; with both on, one is picked per batch
    mix_prob: float = Field(1.0, ge=0, le=1)
    grad_clip: float | None = Field(None, gt=0)  # max global gradient norm
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool | None = None  # None: on for CUDA, off on CPU
    channels_last: bool | None = None  # None: on for CUDA
    deterministic: bool = False  # deterministic kernels (bit-identical resume on CPU)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm)
    checkpoint_every_steps: int = Field(0, ge=0)  # 0: only at epoch ends
    resume: bool = False  # continue from <run>/checkpoints/last.pt
    keep_epoch_checkpoints: bool = False  # also checkpoints/epoch_NNN.pt, 000 = init (fgvc analyze transfer)
    limit_train_batches: int | None = Field(None, ge=1)  # for smoke runs and benchmarks
    log_every_steps: int = Field(20, ge=1)
    progress: bool = True  # progress bars (shown only on a terminal)


class EvalConfig(Section):
    topk: tuple[int, int] = (1, 5)
    # test-time augmentation: each one more row of the report's TTA table (softmax averaged over the
    # views); the headline figure stays the single centre crop
    hflip: bool = False  # the centre crop and its mirror image
    tta_scales: list[Annotated[int, Field(ge=16)]] = []  # multi-scale: the eval pipeline at each size (px)
    ten_crop: bool = False  # 4 corners + centre of the image_size / crop_pct resize, and their mirrors


class Config(Section):
    name: str = "run"
    seed: int = Field(0, ge=0, lt=2 ** 32)  # NumPy's seeding range
    output_dir: str = "runs"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator("name")
    @classmethod
    def _name_stays_in_output_dir(cls, name: str) -> str:
        parts = PurePath(name).parts
        if not parts or PurePath(name).is_absolute() or ".." in parts or parts == (".",):
            raise ValueError("a run name is a folder inside output_dir: no absolute path, no '..'")
        return name

    @model_validator(mode="after")
    def _fusion_has_metadata(self) -> Config:
        if self.model.fusion.name != "none" and not self.data.metadata:
            raise ValueError(f"model.fusion.name={self.model.fusion.name} reads metadata: set data.metadata "
                             "(e.g. [geo, temporal])")
        return self

    @model_validator(mode="after")
    def _priors_complete(self) -> Config:
        if self.method.name == "priors" and not (self.method.image_checkpoint and self.data.metadata):
            raise ValueError("method.name=priors needs method.image_checkpoint (an image-only best.pt) "
                             "and data.metadata")
        return self

    @model_validator(mode="after")
    def _progressive_has_stages(self) -> Config:
        if (self.method.name == "progressive") != (self.model.head == "multi_stage"):
            raise ValueError("method.name=progressive and model.head=multi_stage go together (got "
                             f"method.name={self.method.name}, model.head={self.model.head})")
        if self.model.head == "multi_stage" and self.model.fusion.name != "none":
            raise ValueError("model.head=multi_stage reads no metadata: set model.fusion.name=none")
        if (self.method.name == "erudite") != (self.model.head == "erudite"):
            raise ValueError("method.name=erudite and model.head=erudite go together (got "
                             f"method.name={self.method.name}, model.head={self.model.head})")
        if self.method.name == "ctc" and (self.model.head != "linear" or self.model.fusion.name != "none"):
            raise ValueError("method.name=ctc embeds the pooled backbone feature of an image-only model: set "
                             "model.head=linear and model.fusion.name=none")
        if self.method.name == "ctc" and (self.train.mixup_alpha > 0 or self.train.cutmix_alpha > 0):
            raise ValueError("method.name=ctc contrasts each image with its own memory-bank entry, which a mixed "
                             "image does not have: set train.mixup_alpha=0 and train.cutmix_alpha=0")
        e = self.model.erudite
        if e.multi_stage and (e.hierarchical or self.method.augment == "snapmix"):
            raise ValueError("model.erudite.multi_stage (Ours_PMG) takes neither model.erudite.hierarchical nor "
                             "method.augment=snapmix (its semantic maps need PMG's concatenated classifier)")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: _base_ chain loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    bases = raw.pop("_base_", [])
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, _read_yaml(path.parent / base, seen + (path,)))
    return _deep_merge(merged, raw)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what: "line 3, column 1: a tab (YAML indents with spaces)"."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "'\\t'" in problem:
        problem = "a tab (YAML indents with spaces only)"
    context = getattr(exc, "context", None)
    if context and "tab" not in problem:
        problem = f"{problem} ({context})"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def apply_override(tree: dict, override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``1e-3``, ``[geo]``, ``null``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{override}' is not of the form key=value (e.g. optim.lr=0.01)")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{override}': '{part}' is a value, not a section")
    node[leaf] = value


def _explain(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        section = _section_at(first["loc"][:-1])
        known = ", ".join(section.model_fields) if section else ""
        return f"unknown config key '{key}'" + (f" (known keys here: {known})" if known else "")
    if first["type"] == "missing":
        return f"config key '{key}' is required"
    got = first.get("input")
    msg = first["msg"].removeprefix("Value error, ")
    if not key:  # a check across sections: its message names the keys
        return msg
    return f"config key '{key}': {msg} (got {got!r})" if not isinstance(got, dict) else f"{key}: {msg}"


def _section_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def build_config(tree: dict) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML experiment (or start empty), apply dotted overrides, validate."""
    tree = _read_yaml(Path(path)) if path else {}
    for override in overrides:
        apply_override(tree, override)
    return build_config(tree)
