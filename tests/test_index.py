"""The columnar sample index and its cache: the cached index is the freshly parsed one sample for
sample, a changed annotation file is read again, a damaged cache is rebuilt; ``data.check_images``
modes; ``fgvc data verify --no-images`` on annotations whose images are not there."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from fgvc.cli import main
from fgvc.config import DataConfig
from fgvc.data import index as index_module
from fgvc.data.dataset import ImageDataset
from fgvc.data.formats import read_dataset
from fgvc.data.index import SampleIndex
from fgvc.data.splits import prepare_splits, read_source
from fgvc.data.metadata import encode_batch
from fgvc.data.records import Sample
from fgvc.errors import DataError


def write_inat2021(root: Path, n_train: int = 40, n_val: int = 12, classes: int = 4, touch: bool = False) -> Path:
    """A release-format iNat 2021 pair of files; some records lack a location or a date, one has an
    invalid latitude, a name needs normalising."""
    root.mkdir(parents=True, exist_ok=True)
    cats = [{"id": c, "name": f"Genus{c} species{c}", "genus": f"Genus{c}", "supercategory": "Plants",
             "image_dir_name": f"{c:05d}_Plantae_Genus{c}"} for c in range(classes)]
    rng = np.random.default_rng(0)
    first = 0
    for split, n in (("train", n_train), ("val", n_val)):
        images, annotations = [], []
        for i in range(n):
            image_id, label = first + i, i % classes
            name = f"{split}/{cats[label]['image_dir_name']}/{rng.bytes(8).hex()}.jpg"
            if i == 3:
                name = f"{split}/./{cats[label]['image_dir_name']}/odd.jpg"
            date = None if i % 9 == 4 else f"20{10 + i % 10}-0{1 + i % 9}-1{i % 10} 10:00:00+00:00"
            lat = None if i % 7 == 5 else (120.0 if i == 8 else round(float(rng.uniform(-60, 60)), 5))
            images.append({"id": image_id, "file_name": name, "width": 300, "height": 200, "license": 1,
                           "date": date, "latitude": lat, "longitude": None if lat is None else 12.5,
                           "location_uncertainty": 10})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": label})
            if touch:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).touch()
        (root / f"{split}.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                        "categories": cats}))
        first += n
    return root


def config(root: Path, cache_dir: Path, **fields) -> DataConfig:
    fields = {"check_images": "none", "metadata": ["geo", "temporal"]} | fields
    return DataConfig(format="inat2021", root=str(root), train_split="train", cache_dir=str(cache_dir), **fields)


def test_cached_index_equals_the_freshly_parsed_one_sample_for_sample(tmp_path):
    root, cache = write_inat2021(tmp_path / "inat"), tmp_path / "cache"
    fresh = read_dataset("inat2021", root, splits=("train", "val"), check_images=False)
    built = read_source(config(root, cache))
    assert len(list(cache.glob("*.idx"))) == 1
    mapped = read_source(config(root, cache))
    assert isinstance(mapped.splits["train"].labels, np.memmap)  # read from the cache, not parsed
    for split in ("train", "val"):
        want = list(fresh.splits[split])
        assert [built.splits[split][i] for i in range(len(want))] == want
        assert [mapped.splits[split][i] for i in range(len(want))] == want
    assert mapped.classes == fresh.classes and mapped.taxonomy == fresh.taxonomy
    assert mapped.splits["train"][3].path == os.path.abspath(root / "train" / "00003_Plantae_Genus3" / "odd.jpg")
    # what training reads: the same splits (hold-out included) and the same metadata encoding
    cfg = config(root, cache)
    splits, again = prepare_splits(cfg), prepare_splits(cfg)
    assert list(splits.val) == list(again.val) and list(splits.train) == list(again.train)
    dataset = ImageDataset(splits.train, transform=None, metadata=("geo", "temporal"))
    meta, missing = encode_batch(list(splits.train), ("geo", "temporal"))
    assert np.array_equal(dataset.meta, meta) and dataset.missing_metadata == missing > 0


def test_a_changed_annotation_file_is_read_again(tmp_path):
    root, cache = write_inat2021(tmp_path / "inat"), tmp_path / "cache"
    assert read_source(config(root, cache)).splits["val"][0].label == 0
    val = root / "val.json"
    stat = val.stat()
    text = val.read_text()
    changed = text.replace('"category_id": 0}', '"category_id": 1}', 1)  # same size, same mtime below
    assert len(changed) == len(text) and changed != text
    val.write_text(changed)
    os.utime(val, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert read_source(config(root, cache)).splits["val"][0].label == 1
    assert len(list(cache.glob("*.idx"))) == 1  # the same file, rewritten


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_cache_is_rebuilt_never_trusted(tmp_path, caplog, damage):
    root, cache = write_inat2021(tmp_path / "inat"), tmp_path / "cache"
    want = list(read_source(config(root, cache)).splits["train"])
    (path,) = cache.glob("*.idx")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 3] ^= 0x55  # inside the arrays: only the checksum can tell
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="fgvc.data.index"):
        got = read_source(config(root, cache))
    assert "index cache is damaged" in caplog.text
    assert list(got.splits["train"]) == want
    assert index_module.read_source_file(path, json.loads(path.read_bytes()[-16 - int.from_bytes(
        path.read_bytes()[-16:-8], "little"):-16])["key"]) is not None  # rebuilt and sound


def test_check_images_all_sample_none(tmp_path, monkeypatch, caplog):
    root = write_inat2021(tmp_path / "inat", touch=True)
    cache = tmp_path / "cache"
    gone = prepare_splits(config(root, cache)).test[5].path  # a val image that goes missing
    os.remove(gone)
    with pytest.raises(DataError, match=f"val record 45: file {gone} not found"):
        prepare_splits(config(root, cache, check_images="all"))
    skipped = prepare_splits(config(root, cache, check_images="all", bad_records="skip"))
    assert len(skipped.test) == 11 and gone not in [s.path for s in skipped.test]
    assert any(gone in p for p in skipped.source.problems)
    assert len(prepare_splits(config(root, cache, check_images="none")).test) == 12  # not looked at
    # sample: a seeded few (here 6 of 12, monkeypatched) with the count extrapolated in the log
    monkeypatch.setattr(index_module, "SAMPLE_CHECKS", 6)
    for name in os.listdir(root / "val" / "00001_Plantae_Genus1"):
        os.remove(root / "val" / "00001_Plantae_Genus1" / name)  # a quarter of val
    with caplog.at_level(logging.INFO, logger="fgvc.data.splits"):
        sampled = prepare_splits(config(root, cache, check_images="sample", bad_records="skip"))
    assert "sampled image files missing (data.check_images=sample)" in caplog.text
    assert "about" in caplog.text and 6 <= len(sampled.test) < 12
    # a missing file met in training is a bad image: skipped and counted, or a one-line error
    dataset = ImageDataset(prepare_splits(config(root, cache, check_images="none")).test, transform=None,
                           skip_bad_images=True)
    assert "skipped" in dataset[5] and gone in dataset[5]["skipped"]


def test_verify_no_images_reports_annotations_whose_images_are_absent(tmp_path, capsys):
    root = write_inat2021(tmp_path / "inat")  # no image file at all
    cfg = tmp_path / "inat.yaml"
    cfg.write_text(f"data:\n  format: inat2021\n  root: {root}\n  train_split: train\n"
                   f"  cache_dir: {tmp_path / 'cache'}\n")
    assert main(["-q", "data", "verify", str(cfg), "--no-images", "--json", str(tmp_path / "v.json")]) == 1
    summary = json.loads((tmp_path / "v.json").read_text())
    assert summary["splits"]["test"]["images"] == 12 and summary["splits"]["train"]["unreadable_images"] == 0
    assert summary["splits"]["train"]["images"] + summary["splits"]["val"]["images"] == 40
    assert summary["splits"]["train"]["metadata_missing"] > 0
    assert [p for p in summary["problems"] if "latitude 120" in p]  # the invalid latitude, named
    assert "12 " in capsys.readouterr().out
    assert main(["-q", "data", "verify", str(cfg)]) == 2  # with images: every listed file is missing
    assert "split 'train' (train) has no image file that exists" in capsys.readouterr().err


def test_index_round_trips_every_field_and_takes_rows():
    samples = [Sample("/a/1.jpg", 2, lat=10.5, lon=-3.0, date="2021-06-01 10:00:00+00:00", dataset="cub", id="1",
                      box=(1.0, 2.0, 3.0, 4.0)),
               Sample("/a/2.jpg", 0, date=0.25, dataset="cars", id="x", trim_bottom=20),
               Sample("/a/3.jpg", 1, lat=95.0, lon=1.0, date=dt.date(2020, 2, 29), dataset="cub", row=7),
               Sample("/a/é.jpg", 1, lat=None, lon=None, date=dt.datetime(2019, 3, 1, 5, 30), dataset="cub")]
    index = SampleIndex.from_samples(samples)
    assert list(index) == samples and index[-1] == samples[-1]
    assert list(index[1:3]) == samples[1:3] and list(index.take(np.array([3, 0]))) == [samples[3], samples[0]]
    for use in (("geo", "temporal"), ("geo",), ("temporal",)):
        assert np.array_equal(index.encode(use)[0], encode_batch(samples, use)[0])
        assert index.encode(use)[1] == encode_batch(samples, use)[1]
    with pytest.raises(DataError, match="cub: record /a/3.jpg|cub: record 3"):
        SampleIndex.from_samples(samples[2:3] + [Sample("/b.jpg", 0, lat=95.0, lon=0.0, dataset="cub", id="3")]
                                 ).encode(("geo",), "error")


RANK_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from fgvc.config import DataConfig
from fgvc.data import index as index_module
from fgvc.data.splits import read_source

dist.init_process_group("gloo")
built = []
parse = index_module.index_source
index_module.index_source = lambda source: built.append(1) or parse(source)
root, cache, out = sys.argv[1:]
cfg = DataConfig(format="inat2021", root=root, train_split="train", cache_dir=cache, check_images="none",
                 metadata=["geo", "temporal"])
source = read_source(cfg)
train = source.splits["train"]
json.dump({"parsed": len(built), "mapped": type(train.labels).__name__,
           "samples": [[s.path, s.label] for s in (train[i] for i in range(len(train)))]},
          open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w"))
dist.destroy_process_group()
"""


def test_under_torchrun_only_rank_0_parses_and_the_other_rank_maps_its_file(tmp_path):
    import subprocess
    import sys

    root, cache = write_inat2021(tmp_path / "inat"), tmp_path / "cache"
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(root), str(cache), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["parsed"] == 1 and rank1["parsed"] == 0  # the annotations were parsed once, by rank 0
    assert rank1["mapped"] == "memmap" and len(list(cache.glob("*.idx"))) == 1
    assert rank0["samples"] == rank1["samples"] and len(rank0["samples"]) == 40
