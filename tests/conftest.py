"""Shared fixtures: small image datasets written to disk in real layouts, and tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgvc.config import build_config

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


def write_folder_dataset(root: Path, classes: int = 3, train_per_class: int = 12, test_per_class: int = 4,
                         size: int = 32, seed: int = 0) -> Path:
    """``root/{train,test}/<class>/*.png``: each class a noisy colour, so a tiny model can learn it."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(COLOURS[c % len(COLOURS)], 40, (size, size, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session", autouse=True)
def index_cache(tmp_path_factory) -> Path:
    """The sample-index cache of the test session (never the user's ~/.cache/fgvc); subprocesses inherit it."""
    os.environ["FGVC_CACHE_DIR"] = str(tmp_path_factory.mktemp("index-cache"))
    return Path(os.environ["FGVC_CACHE_DIR"])


@pytest.fixture(scope="session")
def folder_dataset(tmp_path_factory) -> Path:
    return write_folder_dataset(tmp_path_factory.mktemp("folder"))


def tiny_tree(root: Path, output_dir: Path, **sections) -> dict:
    """A config tree for a seconds-long CPU run on ``root`` (folder format)."""
    tree = {
        "name": "tiny", "seed": 0, "output_dir": str(output_dir),
        "data": {"format": "folder", "root": str(root), "image_size": 32, "batch_size": 4,
                 "num_workers": 0, "val_fraction": 0.25},
        "model": {"backbone": "test_resnet"},
        "optim": {"lr": 0.05, "weight_decay": 1e-4},
        "schedule": {"epochs": 2, "warmup_epochs": 0.5},
        "train": {"progress": False, "deterministic": True},
    }
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values} if isinstance(values, dict) else values
    return tree


def tiny_config(root: Path, output_dir: Path, **sections):
    return build_config(tiny_tree(root, output_dir, **sections))


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict:
    """Real tiny runs (image-only, PMSI multi-stage, Dynamic MLP fusion) for the deployment tests."""
    from _deploy import train_runs

    return train_runs(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def deploy_models(tmp_path_factory):
    """Image-only, Dynamic MLP and PriorsNet runs on a tiny synthetic iNat-2021 set (tests/_species_models.py)."""
    from _species_models import train_deploy_models

    return train_deploy_models(tmp_path_factory.mktemp("deploy"))
