"""Trained tiny runs for the deployment tests (INT8 export, hub folders): real checkpoints and reports."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from conftest import COLOURS, tiny_config, write_folder_dataset
from PIL import Image

from fgvc.engine.run import train_and_report

LATITUDES = [-40.0, -10.0, 20.0, 50.0]  # one region per class: the location carries signal too


def write_manifest_dataset(root: Path, classes: int = 4, train_per_class: int = 16, test_per_class: int = 8,
                           size: int = 32, seed: int = 0) -> Path:
    """``root/manifest.csv`` (path,label,lat,lon,date,split) over noisy-colour PNGs, one region per class."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(COLOURS[c % len(COLOURS)], 60, (size, size, 3)), 0, 255)
                path = folder / f"{i:03d}.png"
                Image.fromarray(pixels.astype(np.uint8)).save(path)
                rows.append({"path": str(path.relative_to(root)), "label": f"class_{c}",
                             "lat": LATITUDES[c % len(LATITUDES)] + rng.normal(0, 3),
                             "lon": rng.uniform(-60, 60), "date": f"2021-{rng.integers(1, 13):02d}-15",
                             "split": split})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def train_run(data_root: Path, out: Path, name: str, **sections):
    """``fgvc train`` of a tiny config (train, select on val, test once, report): ``(config, best.pt)``."""
    cfg = tiny_config(data_root, out, name=name, **sections)
    train_and_report(cfg)
    return cfg, cfg.run_dir / "checkpoints" / "best.pt"


def train_runs(tmp: Path) -> dict:
    """One trained run per kind of model in ``KINDS``: ``{kind: (config, best.pt)}``."""
    images, manifest = folder_data(tmp / "folder"), write_manifest_dataset(tmp / "manifest")
    return {kind: train_run(manifest if kind == "fusion" else images, tmp / "runs", kind,
                            **{**sections, "data": {"batch_size": 8, **sections.get("data", {})}})
            for kind, sections in KINDS.items()}


def folder_data(root: Path) -> Path:
    """Four colour classes, 16 training and 10 test images each (a larger test batch than conftest's)."""
    return write_folder_dataset(root, classes=4, train_per_class=16, test_per_class=10)


# the three kinds of model an export must handle, with their config sections
KINDS = {
    "image_only": {},
    "pmsi": {"model": {"backbone": "test_resnet", "head": "multi_stage",
                       "multi_stage": {"stages": 3, "hidden": 32}},
             "method": {"name": "progressive", "augment": "rmg", "phases": True},
             "schedule": {"epochs": 1}},  # four passes per batch: one epoch is enough to leave random init
    "fusion": {"model": {"backbone": "test_resnet", "fusion": {"name": "dynamic_mlp", "d": 16, "h": 8,
                                                               "loc_width": 16}},
               "data": {"format": "manifest", "metadata": ["geo", "temporal"]}},
}
