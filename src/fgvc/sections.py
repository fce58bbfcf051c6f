"""The config sections below everything that reads them, and the base of every section.

``fgvc.config`` assembles the experiment ``Config`` from these (model heads, optimiser, schedule,
training, evaluation), the data section (``fgvc.data.section``, whose formats come from the readers),
the fusion section (``fgvc.models.fusion``) and the method section each method module defines on
``MethodSection``. Data, models and methods import their section, never the assembled ``Config``, so
that the config can know every format, fusion and method without any of them importing it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from fgvc.config import Config

class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
