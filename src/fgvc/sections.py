"""The config sections each part of the package reads, below everything that reads them.

``fgvc.config`` assembles them into the experiment ``Config`` (with the model section, whose fusion
names come from ``fgvc.models.fusion``, and the method section each method module defines on
``MethodSection``). Data, models and methods import their section from here, never the assembled
``Config``, so that the config can know every method without a method importing it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from fgvc.config import Config

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


class MethodSection(Section):
    """The ``method`` section of one method: a subclass per method module, ``name: Literal["<method>"]``
    first, then that method's own keys with their defaults and checks.

    ``heads``: the ``model.head`` values the method trains. ``check`` holds the method's rules across
    sections (raise ``ValueError`` with a message naming the keys).
    """

    name: str
    heads: ClassVar[tuple[str, ...]] = ("linear",)

    def check(self, cfg: Config) -> None:
        """Rules that involve other sections than ``method``; nothing by default."""
