"""From a config's ``data`` section to the train / val / test splits a run uses.

One entry point, ``prepare_splits``, for the three ways a dataset can be given: one dataset read by
its format's reader (official splits, or seeded stratified hold-outs of train where a split is
missing), several datasets joined into one label space (``data.joint``: each prepared on its own,
then merged by ``fgvc.data.joint``), and a folder of WebDataset shards (``data.format=shards``: the
splits as they were resolved when written, ``fgvc.data.shards``). The test split never chooses a
model: where a dataset has no validation split, a hold-out of train does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fgvc.config import DataConfig
from fgvc.data.formats import read_dataset
from fgvc.data.holdout import stratified_holdout
from fgvc.data.joint import merge_joint, source_config
from fgvc.data.records import DatasetSource, Sample, Splits
from fgvc.data.shards import read_shard_splits
from fgvc.errors import DataError

log = logging.getLogger(__name__)


def holdout_seed(cfg: DataConfig, role: str) -> int:
    """The seed of the stratified hold-out drawn from train for ``role`` (val, or test when there is none).

    Test's hold-out is drawn first, with ``data.holdout_seed + 1``, so that val's draw (with the seed
    itself) does not depend on whether a test hold-out was made.
    """
    return cfg.holdout_seed + (1 if role == "test" else 0)


def prepare_splits(cfg: DataConfig) -> Splits:
    """Read the dataset(s) ``cfg`` describes and pick train / val / test.

    No official val split → a seeded stratified hold-out of train selects the model. No test split
    at all (a plain folder of classes) → another hold-out of train, made first, is the test split.
    With ``data.joint`` each source is prepared so, then merged into one label space.
    """
    if cfg.joint:
        parts = [(source.dataset_name, prepare_splits(source_config(cfg, source))) for source in cfg.joint]
        return merge_joint(parts, by_dataset=cfg.joint_target == "dataset")
    if cfg.format == "shards":
        return read_shard_splits(cfg)
    return _reader_splits(cfg)


def read_source(cfg: DataConfig) -> DatasetSource:
    """The dataset as its format's reader gives it (every official split), bad records logged."""
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


def _reader_splits(cfg: DataConfig) -> Splits:
    """One dataset: the configured (or the reader's default) splits, hold-outs where one is missing."""
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
