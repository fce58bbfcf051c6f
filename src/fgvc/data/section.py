"""The ``data`` section of the config: which dataset(s), how they are split, decoded and batched.

``data.format`` takes the names of ``fgvc.data.formats.FORMATS`` (one entry per reader module) and
``shards``; ``data.level`` the levels the readers declare.
"""

from __future__ import annotations

from typing import Annotated, Literal

from PIL import Image
from pydantic import Field, model_validator

from fgvc.data.formats import FORMATS, LEVELS
from fgvc.sections import Section

FORMAT_NAMES = tuple(FORMATS)


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
