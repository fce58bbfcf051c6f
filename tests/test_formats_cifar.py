"""CIFAR-10/100 (python pickles) and CINIC-10 (class folders of PNGs) on tiny copies of the real layouts.

The pickles are written as the releases are (a dict with bytes keys, ``b"data"`` uint8 [N, 3072] of
R, G, B planes), so these tests pin the pixel layout: an image read back through ``load_image`` and a
real DataLoader must equal the one written.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms import v2

from fgvc.cli import main
from fgvc.config import DataConfig
from fgvc.data.dataset import ImageDataset, collate, load_image
from fgvc.data.formats import cinic, read_dataset
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.splits import prepare_splits
from fgvc.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fgvc.errors import DataError

FINE = [f"fine_{i:02d}" for i in range(100)]
COARSE = [f"coarse_{i:02d}" for i in range(20)]


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def images_hwc(n: int, seed: int) -> np.ndarray:
    """n random 32x32 RGB images whose pixels differ between channels, rows and columns."""
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def planes(images: np.ndarray) -> np.ndarray:
    """The release's layout: each row holds the R plane (row-major), then G, then B."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def dump(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)
    return path


def cifar100_batch(images: np.ndarray, fine: list[int], name: bytes) -> dict:
    return {b"filenames": [b"img_%d.png" % i for i in range(len(fine))], b"batch_label": name,
            b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine], b"data": planes(images)}


def make_cifar100(parent: Path, train: int = 12, test: int = 4) -> tuple[Path, dict]:
    root = parent / "cifar-100-python"
    written = {"train": images_hwc(train, 0), "test": images_hwc(test, 1)}
    for split, images in written.items():
        dump(root / split, cifar100_batch(images, [(i * 7) % 100 for i in range(len(images))], split.encode()))
    dump(root / "meta", {b"fine_label_names": [n.encode() for n in FINE],
                         b"coarse_label_names": [n.encode() for n in COARSE]})
    return root, written


def test_cifar100_records_levels_and_root(tmp_path):
    root, _ = make_cifar100(tmp_path)
    source = read_dataset("cifar100", root)
    assert source.classes == FINE and source.default_splits == ("train", None, "test")
    assert [len(source.splits[s]) for s in ("train", "test")] == [12, 4]
    sample = source.splits["train"][3]
    assert (sample.label, sample.row, sample.id, Path(sample.path)) == (21, 3, "train#3", (root / "train").resolve())
    coarse = read_dataset("cifar100", root, level="coarse")
    assert coarse.classes == COARSE and coarse.splits["train"][3].label == 21 // 5
    assert read_dataset("cifar100", tmp_path).splits["test"][1].label == 7  # the folder holding the extract
    assert "fine or coarse" in one_line_error(read_dataset, "cifar100", root, level="variant")


def test_cifar_pixels_round_trip_through_load_image(tmp_path):
    root, written = make_cifar100(tmp_path)
    for split in ("train", "test"):
        for sample in read_dataset("cifar100", root).splits[split]:
            assert np.array_equal(np.asarray(load_image(sample)), written[split][sample.row])


def test_cifar100_through_config_and_dataloader_workers(tmp_path):
    root, written = make_cifar100(tmp_path, train=20, test=6)
    splits = prepare_splits(DataConfig(format="cifar100", root=str(tmp_path), val_fraction=0.25))
    assert len(splits.train) + len(splits.val) == 20 and len(splits.test) == 6
    to_tensor = v2.Compose([v2.ToImage()])  # uint8 CHW, no resampling: pixels compare exactly
    dataset = ImageDataset(splits.train, to_tensor)
    from torch.utils.data import DataLoader

    batches = list(DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate))
    images = np.concatenate([b["image"].permute(0, 2, 3, 1).numpy() for b in batches])
    rows = [s.row for s in splits.train]
    assert np.array_equal(images, written["train"][rows])
    assert [int(x) for b in batches for x in b["label"]] == [s.label for s in splits.train]
    # the path training and evaluation take (make_dataset's tensor images, eval transform at 32 px)
    cfg = DataConfig(format="cifar100", root=str(tmp_path), image_size=32, crop_pct=1.0, num_workers=2)
    batch = next(iter(make_loader(cfg, make_dataset(cfg, splits.test, train=False), train=False)))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = ((batch["image"] * std + mean) * 255).permute(0, 2, 3, 1)
    expected = torch.from_numpy(written["test"][[s.row for s in splits.test]]).float()
    assert torch.allclose(pixels, expected, atol=0.5)


def test_cifar100_bad_files_are_one_line_errors(tmp_path):
    root, written = make_cifar100(tmp_path)
    good = cifar100_batch(written["train"], [(i * 7) % 100 for i in range(12)], b"train")
    dump(root / "train", {k: v for k, v in good.items() if k != b"fine_labels"})
    assert "'fine_labels'" in (m := one_line_error(read_dataset, "cifar100", root)) and "train" in m
    dump(root / "train", good | {b"data": good[b"data"][:, :1000]})
    assert "shape (12, 1000)" in one_line_error(read_dataset, "cifar100", root)
    dump(root / "train", good | {b"fine_labels": good[b"fine_labels"][:-1]})
    assert "11 fine_labels for 12 images" in one_line_error(read_dataset, "cifar100", root)
    (root / "train").write_bytes(b"not a pickle")
    assert "not a readable CIFAR python pickle" in one_line_error(read_dataset, "cifar100", root)
    (root / "train").unlink()
    assert "download and extract cifar-100-python.tar.gz" in one_line_error(read_dataset, "cifar100", root)


def test_cifar100_label_out_of_range_is_named_or_skipped(tmp_path):
    root, written = make_cifar100(tmp_path)
    labels = [(i * 7) % 100 for i in range(12)]
    labels[5] = 100
    dump(root / "train", cifar100_batch(written["train"], labels, b"train"))
    assert "train: row 5: fine_label 100 is not in 0..99" in one_line_error(read_dataset, "cifar100", root)
    source = read_dataset("cifar100", root, on_bad_record="skip")
    assert len(source.splits["train"]) == 11 and source.problems == ["train: row 5: fine_label 100 is not in 0..99"]
    sample = source.splits["train"][5]  # row 6 now: the kept rows keep their own pixels
    assert sample.row == 6 and np.array_equal(np.asarray(load_image(sample)), written["train"][6])


def test_cifar10_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump(root / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    batches = {}
    for i, batch in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[batch] = images_hwc(3, i)
        dump(root / batch, {b"data": planes(batches[batch]), b"labels": [i, (i + 1) % 10, 9],
                            b"filenames": [b"a.png", b"b.png", b"c.png"], b"batch_label": batch.encode()})
    source = read_dataset("cifar10", tmp_path)
    assert source.classes == names and len(source.splits["train"]) == 15 and len(source.splits["test"]) == 3
    last = source.splits["train"][-1]
    assert (last.id, last.label) == ("data_batch_5#2", 9)
    assert np.array_equal(np.asarray(load_image(last)), batches["data_batch_5"][2])


def make_cinic(root: Path, per_class: int = 2) -> Path:
    for s, split in enumerate(cinic.SPLITS):
        for label, name in enumerate(cinic.CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = (label * 25, 255 - label * 25, (s * 90 + i * 40) % 256)
                Image.new("RGB", (32, 32), colour).save(folder / f"cifar10-{split}-{i}.png")
    return root


def test_cinic10_splits_and_layout_errors(tmp_path):
    root = make_cinic(tmp_path / "CINIC-10")
    source = read_dataset("cinic10", root)
    assert source.classes == list(cinic.CLASSES) and source.default_splits == ("train", "valid", "test")
    assert {s: len(v) for s, v in source.splits.items()} == {"train": 20, "valid": 20, "test": 20}
    sample = source.splits["valid"][9]  # 2 per class: deer (label 4), its second image
    assert (sample.id, sample.label) == ("valid/deer/cifar10-valid-1.png", 4)
    assert load_image(sample).getpixel((0, 0)) == (100, 155, 130)
    (root / "test" / "cat_extra").mkdir()
    assert "'cat_extra' is not a CINIC-10 class" in one_line_error(read_dataset, "cinic10", root)
    (root / "test" / "cat_extra").rmdir()
    for p in (root / "train" / "cat").iterdir():
        p.unlink()
    assert "train/cat: no images" in one_line_error(read_dataset, "cinic10", root)
    assert read_dataset("cinic10", root, on_bad_record="skip").problems[0].endswith("train/cat: no images")
    (root / "train" / "cat").rmdir()
    assert "cat: not found" in one_line_error(read_dataset, "cinic10", root)


@pytest.mark.parametrize("fmt", ["cifar100", "cinic10"])
def test_data_verify_reads_both(tmp_path, capsys, fmt):
    root = make_cifar100(tmp_path)[0] if fmt == "cifar100" else make_cinic(tmp_path / "CINIC-10")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"format": fmt, "root": str(root), "val_fraction": 0.25}}))
    assert main(["-q", "data", "verify", str(cfg), "--json", str(tmp_path / "v.json")]) == 0
    splits = json.loads((tmp_path / "v.json").read_text())["splits"]
    assert sum(s["images"] for s in splits.values()) == (16 if fmt == "cifar100" else 60)
    assert all(s["unreadable_images"] == 0 for s in splits.values())
    assert "0 problem(s)" in capsys.readouterr().out
