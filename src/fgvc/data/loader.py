"""From a config's ``data`` section to the train/val/test splits and their DataLoaders."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

from fgvc.config import DataConfig
from fgvc.data.dataset import ImageDataset, collate
from fgvc.data.formats import read_dataset
from fgvc.data.holdout import stratified_holdout
from fgvc.data.records import DatasetSource, Sample
from fgvc.data.samplers import BalancedSampler, ResumableSampler
from fgvc.data.shards import ShardDataset, ShardIndex, read_shard_splits
from fgvc.data.transforms import eval_transform, train_transform
from fgvc.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """The three splits a run uses, and how validation was obtained (stated in reports)."""

    source: DatasetSource
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    names: dict[str, str]  # split role -> where it came from, e.g. {"val": "holdout 10% of train"}
    # (dataset name, class count) in label order: dataset n owns the labels after the first n groups'
    # classes. One group for a single dataset; one per source with ``data.joint``.
    groups: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = [(self.source.name, len(self.source.classes))]

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    def samples(self, role: str) -> list[Sample]:
        """The samples of ``role`` ("train", "val" or "test")."""
        if role not in ("train", "val", "test"):
            raise DataError(f"split '{role}': expected one of train, val, test")
        return getattr(self, role)


def read_source(cfg: DataConfig) -> DatasetSource:
    options = {"on_bad_record": cfg.bad_records}
    if cfg.format == "aircraft":
        options |= {"level": cfg.level or "variant", "crop_banner": cfg.crop_banner}
    if cfg.format == "cifar100" and cfg.level:
        options["level"] = cfg.level
    if cfg.name:
        options["name"] = cfg.name
    if cfg.format.startswith("inat"):  # parse only the JSON files the run uses (train.json of 2021 is 2.7 M images)
        default_train = "train_mini" if cfg.format == "inat2021" else "train"
        wanted = {cfg.train_split or default_train, cfg.test_split or "val", cfg.val_split}
        options["splits"] = tuple(sorted(s for s in wanted if s not in (None, "holdout")))
    source = read_dataset(cfg.format, Path(cfg.root).expanduser(), **options)
    for problem in source.problems:
        log.warning("skipped record: %s", problem)
    return source


def _split(source: DatasetSource, name: str, role: str) -> list[Sample]:
    if name not in source.splits:
        raise DataError(f"{source.name}: no split '{name}' for data.{role}_split "
                        f"(available: {', '.join(sorted(source.splits))})")
    samples = source.splits[name]
    if not samples:
        raise DataError(f"{source.name}: split '{name}' ({role}) is empty")
    return samples


def holdout_seed(cfg: DataConfig, role: str) -> int:
    """The seed of the stratified hold-out drawn from train for ``role`` (val, or test when there is none)."""
    return cfg.holdout_seed + (1 if role == "test" else 0)


def prepare_splits(cfg: DataConfig) -> Splits:
    """Read the dataset and pick train/val/test.

    No official val split → a seeded stratified hold-out of train selects the model. No test split
    at all (a plain folder of classes) → another hold-out of train, made first, is the test split.
    With ``data.joint`` each source is prepared so, then merged (``fgvc.data.joint``).
    """
    if cfg.joint:
        from fgvc.data.joint import prepare_joint_splits  # joint calls back into this function

        return prepare_joint_splits(cfg)
    if cfg.format == "shards":
        return read_shard_splits(cfg)
    source = read_source(cfg)
    train_name, val_name, test_name = source.default_splits
    train_name = cfg.train_split or train_name
    test_name = cfg.test_split or test_name
    val_name = cfg.val_split or val_name
    if val_name is not None and val_name == test_name:
        raise DataError(f"data.val_split '{val_name}' is the test split: model selection must not see it")
    if test_name is not None and test_name == train_name:
        raise DataError(f"data.train_split and data.test_split are both '{test_name}'")
    train = _split(source, train_name, "train")
    names = {"train": f"'{train_name}'"}
    if test_name is None:
        train, test = stratified_holdout(train, cfg.test_fraction, holdout_seed(cfg, "test"))
        names["test"] = f"stratified hold-out of {cfg.test_fraction:.0%} of '{train_name}' (no test split)"
    else:
        test, names["test"] = _split(source, test_name, "test"), f"official split '{test_name}'"
    if val_name in (None, "holdout"):
        train, val = stratified_holdout(train, cfg.val_fraction, holdout_seed(cfg, "val"))
        names["val"] = f"stratified hold-out of {cfg.val_fraction:.0%} of '{train_name}' (seed {cfg.holdout_seed})"
    else:
        val, names["val"] = _split(source, val_name, "val"), f"official split '{val_name}'"
    if test_name is None or val_name in (None, "holdout"):
        names["train"] += " minus hold-out"
    return Splits(source, train, val, test, {role: names[role] for role in ("train", "val", "test")})


def make_dataset(cfg: DataConfig, samples: list[Sample], train: bool) -> ImageDataset:
    transform = (train_transform(cfg.image_size, cfg.min_scale, cfg.hflip, cfg.resize) if train
                 else eval_transform(cfg.image_size, cfg.crop_pct, cfg.resize))
    if isinstance(samples, ShardIndex):  # a split of data.format=shards: streamed from its tar files
        return ShardDataset(samples, transform, cfg.metadata, cfg.bad_metadata, cfg.bad_images == "skip",
                            cfg.shuffle_buffer)
    return ImageDataset(samples, transform, cfg.metadata, cfg.bad_metadata, cfg.bad_images == "skip",
                        tensor_images=True)


def make_loader(cfg: DataConfig, dataset: ImageDataset, *, train: bool, seed: int = 0,
                rank: int = 0, world_size: int = 1) -> DataLoader:
    """Training loaders shuffle with a resumable sampler; eval loaders keep order (sharded when DDP).

    With ``data.joint`` training batches are balanced: ``batch_size / len(joint)`` images of each dataset.
    A ``ShardDataset`` has no sampler: it deals its stream to ranks and workers itself, batch by batch.
    """
    if isinstance(dataset, ShardDataset):
        batch_size = cfg.batch_size if train else (cfg.eval_batch_size or 2 * cfg.batch_size)
        dataset = dataset.stream(seed=seed, shuffle=train, rank=rank, world_size=world_size, chunk=batch_size)
        sampler = None
    elif train and cfg.joint:
        sampler = _balanced_sampler(cfg, dataset, seed, rank, world_size)
    else:
        sampler = ResumableSampler(len(dataset), seed, shuffle=train, rank=rank, world_size=world_size)
    workers = cfg.num_workers
    # Its own generator: each new iterator draws a worker base seed, which from the global generator
    # would shift the model's random numbers (dropout) after a mid-epoch resume.
    return DataLoader(dataset, batch_size=cfg.batch_size if train else (cfg.eval_batch_size or 2 * cfg.batch_size),
                      sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available(), drop_last=train,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                      generator=torch.Generator().manual_seed(seed))


def set_epoch(loader: DataLoader, epoch: int, start: int = 0) -> None:
    """Position a training loader ``start`` samples (all ranks together) into ``epoch``: through its
    sampler, or through the dataset itself when it is streamed (shards)."""
    target = loader.dataset if isinstance(loader.dataset, IterableDataset) else loader.sampler
    target.set_epoch(epoch, start=start)


def _balanced_sampler(cfg: DataConfig, dataset: ImageDataset, seed: int, rank: int,
                      world_size: int) -> BalancedSampler:
    names = [source.dataset_name for source in cfg.joint]
    if cfg.batch_size % len(names):
        raise ConfigError(f"data.batch_size ({cfg.batch_size}) must be a multiple of the {len(names)} datasets "
                          "of data.joint: each batch holds the same number of images of each")
    index = {name: i for i, name in enumerate(names)}
    unknown = next((s.dataset for s in dataset.samples if s.dataset not in index), None)
    if unknown is not None:
        raise DataError(f"a training sample of dataset '{unknown}' is not one of data.joint ({', '.join(names)})")
    return BalancedSampler([index[s.dataset] for s in dataset.samples], cfg.batch_size // len(names), seed,
                           rank=rank, world_size=world_size)
