"""From config to splits and batches: the protocol (never select on test) and the batch contents."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_folder_dataset
from PIL import Image

from fgvc.config import DataConfig
from fgvc.data.dataset import collate
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.splits import prepare_splits
from fgvc.errors import DataError


def test_folder_with_test_split_holds_out_val(folder_dataset):
    splits = prepare_splits(DataConfig(format="folder", root=str(folder_dataset), val_fraction=0.25))
    assert len(splits.test) == 12 and len(splits.train) + len(splits.val) == 36
    assert not {s.path for s in splits.val} & {s.path for s in splits.train}
    assert {s.label for s in splits.val} == {0, 1, 2}  # stratified
    assert splits.names["test"] == "official split 'test'" and "hold-out" in splits.names["val"]


def test_folder_without_test_split_holds_out_test_and_val(tmp_path):
    root = write_folder_dataset(tmp_path / "d", classes=2, train_per_class=10, test_per_class=0)
    flat = tmp_path / "flat"
    (root / "train").rename(flat)
    splits = prepare_splits(DataConfig(format="folder", root=str(flat), val_fraction=0.2, test_fraction=0.2))
    paths = [{s.path for s in part} for part in (splits.train, splits.val, splits.test)]
    assert sum(map(len, paths)) == 20 and not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert "no test split" in splits.names["test"]


def test_val_may_not_be_test_and_unknown_splits_are_named(folder_dataset):
    with pytest.raises(DataError, match="model selection must not see it"):
        prepare_splits(DataConfig(format="folder", root=str(folder_dataset), val_split="test"))
    with pytest.raises(DataError, match="no split 'valid'.*available: test, train"):
        prepare_splits(DataConfig(format="folder", root=str(folder_dataset), val_split="valid"))


def test_batches_carry_metadata_and_count_missing(tmp_path):
    for name in "abcd":
        Image.new("RGB", (20, 20), (10, 20, 30)).save(tmp_path / f"{name}.png")
    rows = [{"path": "a.png", "label": "x", "lat": 10.0, "lon": 20.0, "date": "2020-03-01", "split": "train"},
            {"path": "b.png", "label": "y", "lat": None, "lon": None, "date": None, "split": "train"},
            {"path": "c.png", "label": "x", "lat": 95.0, "lon": 0.0, "date": "2020-03-01", "split": "test"},
            {"path": "d.png", "label": "y", "lat": 1.0, "lon": 2.0, "date": "2021-02-30", "split": "test"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(format="manifest", root=str(manifest), metadata=["geo", "temporal"], image_size=16,
                     batch_size=2, num_workers=0)
    splits = prepare_splits(cfg.model_copy(update={"val_split": "holdout", "val_fraction": 0.5}))
    test = make_dataset(cfg, splits.test, train=False)
    assert test.missing_metadata == 2  # out-of-range latitude and 30 February become "missing"
    batch = next(iter(make_loader(cfg, test, train=False)))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["meta"].shape == (2, 6)
    assert torch.count_nonzero(batch["meta"]) == 0
    with pytest.raises(DataError, match="outside"):
        make_dataset(cfg.model_copy(update={"bad_metadata": "error"}), splits.test, train=False)


def test_training_augmentation_is_seeded_per_sample(folder_dataset):
    cfg = DataConfig(format="folder", root=str(folder_dataset), image_size=24, num_workers=0)
    data = make_dataset(cfg, prepare_splits(cfg).train, train=True)
    a, b, c = data[(0, 123)], data[(0, 123)], data[(0, 124)]
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    state = torch.get_rng_state()
    data[(1, 5)]
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched


def test_collate_drops_skipped_items_and_reports_them():
    good = {"image": torch.zeros(3, 2, 2), "label": 1, "meta": torch.zeros(0), "index": 0}
    batch = collate([good, {"skipped": "x.jpg: unreadable image"}, good])
    assert batch["image"].shape[0] == 2 and batch["skipped"] == ["x.jpg: unreadable image"]
