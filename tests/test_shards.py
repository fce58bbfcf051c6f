"""WebDataset shards: written from the real readers, read back exactly once per epoch across ranks and
workers, equal to the original reader's records and batches, resumable, trainable, and loud about bad files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
import yaml
from conftest import tiny_config, tiny_tree
from PIL import Image

from fgvc.checkpoint import load_checkpoint
from fgvc.cli import main
from fgvc.config import DataConfig, build_config
from fgvc.data.dataset import decode_image_bytes
from fgvc.data.loader import make_dataset, make_loader, set_epoch
from fgvc.data.shards import read_tar, write_shards
from fgvc.data.splits import prepare_splits
from fgvc.data.verify import verify
from fgvc.engine.run import train_and_report
from fgvc.engine.trainer import Trainer
from fgvc.errors import ConfigError, DataError


def write_manifest_dataset(root, per_class: int = 10, classes: int = 3):
    """JPEGs and PNGs of varied sizes listed in a JSONL manifest with lat/lon/date, some missing or invalid."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(classes):
        for i in range(per_class):
            name = f"c{c}_{i}.{'jpg' if i % 3 else 'png'}"
            h, w = rng.integers(20, 40, 2)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name)
            lat = None if i == 1 else 95.0 if i == 2 else float(rng.uniform(-80, 80))
            rows.append({"path": name, "label": f"class{c}", "lat": lat, "lon": float(rng.uniform(-170, 170)),
                         "date": f"2021-{1 + i % 12:02d}-{1 + i:02d}", "split": "test" if i >= 7 else "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """(original DataConfig, shard DataConfig): 21 train → 15 train + 6 hold-out val, 9 test."""
    tmp = tmp_path_factory.mktemp("shards")
    cfg = DataConfig(format="manifest", root=str(write_manifest_dataset(tmp / "data")), val_fraction=0.3,
                     metadata=["geo", "temporal"], image_size=16, batch_size=2, num_workers=0)
    write_shards(prepare_splits(cfg), tmp / "out", max_per_shard=4, progress=False)
    return cfg, cfg.model_copy(update={"format": "shards", "root": str(tmp / "out")})


def indices(loader) -> list[int]:
    return [i for batch in loader for i in batch["index"].tolist()]


def test_shards_hold_the_original_bytes_and_an_exact_index(sharded):
    cfg, shard_cfg = sharded
    index = json.loads((Path(shard_cfg.root) / "train.json").read_text())
    original = prepare_splits(cfg)
    assert index["count"] == len(original.train) == 15 and [s["count"] for s in index["shards"]] == [4, 4, 4, 3]
    assert index["classes"] == ["class0", "class1", "class2"] and index["source"] == original.names["train"]
    assert [s["name"] for s in index["shards"]] == [f"train-0-00000{i}.tar" for i in range(4)]  # generation 0
    with tarfile.open(f"{shard_cfg.root}/train-0-000000.tar") as tar:
        names = tar.getnames()
        image_name = next(n for n in names if not n.endswith(".json"))
        record = json.loads(tar.extractfile(image_name.split(".")[0] + ".json").read())
        stored = tar.extractfile(image_name).read()
    assert image_name.split(".")[1] == record["path"].rsplit(".", 1)[1]  # jpg stays jpg, png stays png
    assert stored == open(record["path"], "rb").read()  # no re-encoding
    assert record["class"] == original.classes[record["label"]] and record["index"] == 0


def test_splits_records_and_batches_equal_the_original_reader(sharded):
    cfg, shard_cfg = sharded
    original, shards = prepare_splits(cfg), prepare_splits(shard_cfg)
    assert shards.classes == original.classes and shards.groups == original.groups
    assert "stratified hold-out" in shards.names["val"]
    missing = 0
    for role in ("train", "val", "test"):
        assert list(shards.samples(role)) == original.samples(role)  # labels, lat, lon, date, ids, paths
        a = make_dataset(cfg, original.samples(role), train=False)
        b = make_dataset(shard_cfg, shards.samples(role), train=False)
        assert b.missing_metadata == a.missing_metadata
        missing += a.missing_metadata
        batches = list(make_loader(shard_cfg, b, train=False))
        reference = [a[i] for i in range(len(a))]
        assert torch.equal(torch.cat([x["index"] for x in batches]), torch.arange(len(a)))
        assert torch.equal(torch.cat([x["label"] for x in batches]), torch.tensor([r["label"] for r in reference]))
        assert torch.equal(torch.cat([x["meta"] for x in batches]), torch.stack([r["meta"] for r in reference]))
        assert torch.equal(torch.cat([x["image"] for x in batches]), torch.stack([r["image"] for r in reference]))
    assert missing == 6  # lat None (missing) and 95 (invalid, counted as missing): records 1, 2 of each class


def test_every_sample_once_per_epoch_across_two_workers_and_two_ranks(sharded):
    _, shard_cfg = sharded
    splits = prepare_splits(shard_cfg)
    train = make_dataset(shard_cfg, splits.train, train=True)
    one = shard_cfg.model_copy(update={"batch_size": 1, "num_workers": 2})
    for epoch in (0, 1):
        per_rank = []
        for rank in (0, 1):
            loader = make_loader(one, train, train=True, seed=3, rank=rank, world_size=2)
            set_epoch(loader, epoch)
            per_rank.append(indices(loader))
        seen = per_rank[0] + per_rank[1]
        assert len(per_rank[0]) == len(per_rank[1]) == 7  # 15 // 2 each, ranks in lockstep
        assert len(set(seen)) == 14 and set(seen) <= set(range(15))  # one sample sits this epoch out
    test = make_dataset(shard_cfg, splits.test, train=False)
    evaluated = [indices(make_loader(one, test, train=False, rank=r, world_size=2)) for r in (0, 1)]
    assert evaluated == [[0, 2, 4, 6, 8], [1, 3, 5, 7]]  # every sample once, strided as ResumableSampler


def test_batches_do_not_depend_on_worker_count_and_epochs_differ(sharded):
    _, shard_cfg = sharded
    train = make_dataset(shard_cfg, prepare_splits(shard_cfg).train, train=True)
    serial = make_loader(shard_cfg, train, train=True, seed=1)
    parallel = make_loader(shard_cfg.model_copy(update={"num_workers": 2}), train, train=True, seed=1)
    orders = []
    for epoch in (0, 1):  # the persistent workers see each new epoch
        set_epoch(serial, epoch)
        set_epoch(parallel, epoch)
        a, b = list(serial), list(parallel)
        assert len(a) == len(b) == 7  # 15 samples, batches of 2, drop_last
        for x, y in zip(a, b):
            assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
        orders.append(torch.cat([x["index"] for x in a]))
        assert len(set(orders[-1].tolist())) == 14
    assert not torch.equal(orders[0], orders[1])


def test_resume_mid_epoch_continues_with_the_same_batches(sharded):
    _, shard_cfg = sharded
    train = make_dataset(shard_cfg, prepare_splits(shard_cfg).train, train=True)
    loader = make_loader(shard_cfg, train, train=True, seed=5)
    set_epoch(loader, 2)
    full = list(loader)
    set_epoch(loader, 2, start=3 * shard_cfg.batch_size)  # three batches already drawn
    assert len(loader) == len(full) - 3
    rest = list(loader)
    assert len(rest) == len(full) - 3
    for a, b in zip(full[3:], rest):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])


def test_a_run_trains_and_evaluates_from_shards(sharded, tmp_path):
    cfg, shard_cfg = sharded
    run_cfg = tiny_config(shard_cfg.root, tmp_path / "runs", data={"format": "shards", "metadata": ["geo", "temporal"],
                                                                   "image_size": 16, "batch_size": 4},
                          model={"backbone": "test_resnet", "fusion": {"name": "concat"}},
                          schedule={"epochs": 1, "warmup_epochs": 0})
    report = train_and_report(run_cfg)
    assert report["test"]["num_samples"] == 9 and report["protocol"]["counts"] == {"train": 15, "val": 6, "test": 9}
    assert report["epochs"][0]["train_loss"] > 0 and (run_cfg.run_dir / "checkpoints" / "best.pt").is_file()


def test_a_corrupt_image_stops_sharding_with_its_name_or_is_skipped_and_counted(tmp_path, capsys):
    manifest = write_manifest_dataset(tmp_path / "data", per_class=4, classes=2)
    bad = tmp_path / "data" / "c1_2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    config = tmp_path / "c.yaml"
    tree = tiny_tree(manifest, tmp_path / "runs", data={"format": "manifest", "root": str(manifest)})
    config.write_text(yaml.safe_dump(tree))
    assert main(["data", "shard", str(config), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fgvc: error: {bad}: unreadable image (record ") and "\n" not in err
    assert not (tmp_path / "out" / "train.json").exists()
    code = main(["-q", "data", "shard", str(config), str(tmp_path / "out"), "data.bad_images=skip",
                 "--max-per-shard", "2"])
    assert code == 0
    indices = [json.loads((tmp_path / "out" / f"{role}.json").read_text()) for role in ("train", "val", "test")]
    skipped = [message for index in indices for message in index["skipped"]]
    assert sum(index["count"] for index in indices) == 7 and len(skipped) == 1 and str(bad) in skipped[0]
    shard_cfg = DataConfig(format="shards", root=str(tmp_path / "out"), image_size=16, num_workers=0)
    holder = next(index["split"] for index in indices if index["skipped"])
    samples = prepare_splits(shard_cfg).samples(holder)
    batches = list(make_loader(shard_cfg, make_dataset(shard_cfg, samples, train=False), train=False))
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(len(samples)))  # no gap where it was
    assert main(["-q", "data", "shard", str(config), str(tmp_path / "out2"), "--splits", "val"]) == 0
    assert [p.name for p in (tmp_path / "out2").iterdir() if p.suffix == ".json"] == ["val.json"]


def test_jpeg_decoding_gives_pil_pixels_and_fails_on_truncation():
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    pil = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode_image_bytes(data), pil)
    assert decode_image_bytes(data, trim_bottom=4).shape == (3, 20, 30)
    with pytest.raises(ValueError, match="."):
        decode_image_bytes(data[:150])


def test_a_missing_index_or_shard_is_named(tmp_path, sharded):
    with pytest.raises(DataError, match="no train.json, val.json or test.json"):
        prepare_splits(DataConfig(format="shards", root=str(tmp_path)))
    _, shard_cfg = sharded
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "test.json").write_text((Path(shard_cfg.root) / "test.json").read_text())
    with pytest.raises(DataError, match="test-0-000000.tar: shard listed in .*test.json not found"):
        prepare_splits(DataConfig(format="shards", root=str(copy)))


def test_a_corrupt_image_inside_a_shard_is_named_when_read_and_by_verify(sharded, tmp_path):
    _, shard_cfg = sharded
    shutil.copytree(shard_cfg.root, tmp_path / "out")
    tar = tmp_path / "out" / "test-0-000000.tar"
    samples = list(read_tar(tar))
    with wds.TarWriter(str(tar), encoder=False) as writer:  # the first image cut short, the rest as they were
        for i, sample in enumerate(samples):
            writer.write({k: (v[:100] if i == 0 and k == "jpg" else v) for k, v in sample.items()
                          if k == "__key__" or not k.startswith("__")})
    cfg = shard_cfg.model_copy(update={"root": str(tmp_path / "out")})
    test = prepare_splits(cfg).test
    with pytest.raises(DataError, match=r"c0_7\.jpg \(sample 000000000 of test-0-000000\.tar\): "
                                        r"unreadable image \(record \d+\): \w"):
        list(make_loader(cfg, make_dataset(cfg, test, train=False), train=False))
    skip = cfg.model_copy(update={"bad_images": "skip"})
    batches = list(make_loader(skip, make_dataset(skip, test, train=False), train=False))
    assert sum(len(b["skipped"]) for b in batches) == 1 and sum(len(b["label"]) for b in batches) == 8
    summary = verify(cfg, progress=False)
    assert summary["splits"]["test"]["unreadable_images"] == 1 and "c0_7.jpg" in summary["problems"][-1]


def test_joint_data_from_shards_is_refused_with_the_reason():
    joint = [{"format": "folder", "root": "a", "name": "a"}, {"format": "folder", "root": "b", "name": "b"}]
    with pytest.raises(ConfigError, match="data.format=shards with data.joint: .*balanced batches"):
        build_config({"data": {"format": "shards", "joint": joint}})


@pytest.mark.slow
def test_two_processes_train_and_evaluate_from_shards(sharded, tmp_path):
    """``torchrun`` with two gloo processes: each streams its own half, evaluation gathers every image once."""
    _, shard_cfg = sharded
    tree = tiny_tree(shard_cfg.root, tmp_path / "runs", data={"format": "shards", "root": shard_cfg.root,
                                                              "image_size": 16, "batch_size": 2, "num_workers": 1},
                     schedule={"epochs": 1, "warmup_epochs": 0}, train={"device": "cpu"})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(tree))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "fgvc", "-q", "train", str(config)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    report = json.loads((tmp_path / "runs" / "tiny" / "report.json").read_text())
    assert report["epochs"][0]["train_samples"] == 12  # 15 // 2 = 7 per process: 3 steps of 2 x 2 images
    assert report["test"]["num_samples"] == 9  # 5 + 4, each test image once


def test_a_run_from_shards_stopped_mid_epoch_resumes_to_identical_weights(sharded, tmp_path, monkeypatch):
    _, shard_cfg = sharded
    over = {"data": {"format": "shards", "image_size": 16, "batch_size": 2, "num_workers": 2},
            "schedule": {"epochs": 2, "warmup_epochs": 0}, "train": {"checkpoint_every_steps": 1}}
    reference = tiny_config(shard_cfg.root, tmp_path / "reference", **over)
    Trainer(reference).fit()

    stopped = tiny_config(shard_cfg.root, tmp_path / "stopped", **over)
    step = Trainer.train_step

    def stop_in_epoch_two(self, batch):  # 7 steps per epoch: stop before the 10th, the 3rd of epoch 2
        if self.state.global_step == 9:
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        Trainer(stopped).fit()
    monkeypatch.setattr(Trainer, "train_step", step)
    Trainer(tiny_config(shard_cfg.root, tmp_path / "stopped", **{**over, "train": {"resume": True}})).fit()
    got = load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")
    want = load_checkpoint(reference.run_dir / "checkpoints" / "last.pt")
    assert got["state"]["global_step"] == want["state"]["global_step"] == 14
    for key, value in want["model"].items():
        assert torch.equal(got["model"][key], value), key
