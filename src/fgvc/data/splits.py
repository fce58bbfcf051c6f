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

import numpy as np

from fgvc.data.formats import annotation_files, config_options, read_dataset
from fgvc.data.holdout import stratified_holdout
from fgvc.data.index import SampleIndex, default_cache_dir, missing_images, read_cached
from fgvc.data.joint import merge_joint, source_config
from fgvc.data.records import DatasetSource, Sample, Splits
from fgvc.data.section import DataConfig
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
    """The dataset as its format's reader gives it (every official split, each a ``SampleIndex``),
    through the index cache for the formats that name their annotation files; bad records logged.
    Image files are not looked at here (``check_split_images`` does, as ``data.check_images`` says)."""
    options = config_options(cfg)
    root = Path(cfg.root).expanduser()
    files = annotation_files(cfg.format, root, **options) if cfg.cache else None
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    source = read_cached(cfg.format, root, options, files,
                         lambda: read_dataset(cfg.format, root, check_images=False, **options), cache_dir)
    for problem in source.problems:
        log.warning("skipped record: %s", problem)
    return source


def check_split_images(cfg: DataConfig, source: DatasetSource, split: str) -> SampleIndex:
    """The split without the listed images that are not files, as ``data.check_images`` finds them:
    each one a bad record (``data.bad_records``: a one-line error, or skipped and added to the
    source's problems). A sampled check also logs how many are likely missing in the whole split."""
    index = source.splits[split]
    missing, looked = missing_images(index, cfg.check_images, seed=cfg.holdout_seed)
    if cfg.check_images == "sample" and looked < len(index):
        estimate = f"about {round(len(missing) / looked * len(index)):,} of {len(index):,}" if len(missing) else "none"
        log.info("%s '%s': %d of %d sampled image files missing (data.check_images=sample): %s in the split",
                 source.name, split, len(missing), looked, estimate)
    if not len(missing):
        return index
    lines = [f"{source.name}: {split} record {index[int(i)].id}: file {index.paths[int(i)]} not found" for i in missing]
    if cfg.bad_records == "error":
        more = f" (and {len(missing) - 1} more of {looked} checked)" if len(missing) > 1 else ""
        raise DataError(f"{lines[0]}{more}; list them all with `fgvc data verify`, or set data.bad_records=skip")
    for line in lines:
        log.warning("skipped record: %s", line)
    source.problems += lines
    keep = np.ones(len(index), bool)
    keep[missing] = False
    return index.take(keep)


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
    checked: dict[str, SampleIndex] = {}

    def split(name: str, role: str) -> SampleIndex:  # a split of the source, its image files checked
        if name not in checked:
            _split(source, name, role)
            checked[name] = check_split_images(cfg, source, name)
            if not len(checked[name]):
                raise DataError(f"{source.name}: split '{name}' ({role}) has no image file that exists")
        return checked[name]

    train_name, val_name, test_name = source.default_splits
    train_name = cfg.train_split or train_name
    test_name = cfg.test_split or test_name
    val_name = cfg.val_split or val_name
    if val_name is not None and val_name == test_name:
        raise DataError(f"data.val_split '{val_name}' is the test split: model selection must not see it")
    if test_name is not None and test_name == train_name:
        raise DataError(f"data.train_split and data.test_split are both '{test_name}'")
    train = split(train_name, "train")
    names = {"train": f"'{train_name}'"}
    if test_name is None:
        train, test = stratified_holdout(train, cfg.test_fraction, holdout_seed(cfg, "test"))
        names["test"] = f"stratified hold-out of {cfg.test_fraction:.0%} of '{train_name}' (no test split)"
    else:
        test, names["test"] = split(test_name, "test"), f"official split '{test_name}'"
    if val_name in (None, "holdout"):
        train, val = stratified_holdout(train, cfg.val_fraction, holdout_seed(cfg, "val"))
        names["val"] = f"stratified hold-out of {cfg.val_fraction:.0%} of '{train_name}' (seed {cfg.holdout_seed})"
    else:
        val, names["val"] = split(val_name, "val"), f"official split '{val_name}'"
    if test_name is None or val_name in (None, "holdout"):
        names["train"] += " minus hold-out"
    return Splits(source, train, val, test, {role: names[role] for role in ("train", "val", "test")})
