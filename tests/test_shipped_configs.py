"""Every experiment config shipped in configs/ loads, and its model and method can be built and run; the
package ships them all.

The models are built at their real sizes on PyTorch's ``meta`` device: shapes without memory or
weights, so a ResNet-101 + Dynamic MLP or a Swin-B costs no RAM, and a config whose architecture
cannot be built, or whose network cannot take its own image size and metadata, fails here.

What keeps it to a few seconds per hundred configs: on ``meta`` every value is absent, so weight
initialisation is skipped, each distinct backbone is built once, and a forward depends only on the
architecture and the input's shape — it runs once per distinct (architecture, metadata, image size,
datasets, method). Every config still builds its own model and method.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from fgvc.config import load_config, read_tree
from fgvc.data.metadata import metadata_dim
from fgvc.methods import build_method
from fgvc.methods.priors import PriorsNet
from fgvc.models import backbones, build_model

REPO = Path(__file__).parents[1]
ROOT = REPO / "configs"  # a link to src/fgvc/configs, the copy the package ships
# runnable files; `_base.yaml` recipes and the `_variants/` pieces are merged into others
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml")
                 if not any(part.startswith("_") for part in p.relative_to(ROOT).parts))
SHIPPED = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.suffix in (".yaml", ".md"))
CLASSES_PER_DATASET = 7
BATCH = 2


def _by_shape(method):
    """``method`` memoised on its tensor arguments' shapes (exact on meta: tensors hold nothing else)."""
    cache = {}

    def key(value):
        return ("tensor", tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else repr(value)

    @functools.wraps(method)
    def call(*args, **kwargs):
        k = (tuple(map(key, args)), tuple(sorted((n, key(v)) for n, v in kwargs.items())))
        if k not in cache:
            cache[k] = method(*args, **kwargs)
        return cache[k]
    return call


@functools.cache
def _meta_backbone(name: str, pretrained, drop_path_rate: float = 0.0,
                   announce: bool = True) -> backbones.Backbone:
    with torch.device("meta"):
        backbone = _REAL_BACKBONE(name, None, drop_path_rate, announce=False)
    for method in ("forward", "forward_features", "forward_intermediates"):
        if hasattr(backbone.body, method):
            setattr(backbone.body, method, _by_shape(getattr(backbone.body, method)))
    return backbone


_REAL_BACKBONE = backbones.Backbone


# the tensor methods weight initialisers call
_INIT = ("normal_", "uniform_", "erfinv_", "mul_", "add_", "clamp_", "fill_", "zero_")


def _skip_on_meta(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self if self.is_meta else method(self, *args, **kwargs)
    return call


@pytest.fixture
def meta_backbones(monkeypatch):
    monkeypatch.setattr("fgvc.models.Backbone", _meta_backbone)
    for name in _INIT:
        monkeypatch.setattr(torch.Tensor, name, _skip_on_meta(getattr(torch.Tensor, name)))


_RUN: dict[str, None] = {}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_builds_and_runs(path, meta_backbones):
    cfg = load_config(path)
    assert cfg.name and (cfg.data.root or len(cfg.data.joint) >= 2)
    if cfg.model.pretrained == "synthetic":  # the shipped weights must exist for this backbone
        assert backbones.shipped_weights(cfg.model.backbone).is_file()
    groups = [CLASSES_PER_DATASET] * len(cfg.data.joint) if cfg.data.joint else None
    classes = sum(groups) if groups else CLASSES_PER_DATASET
    meta_dim = metadata_dim(cfg.data.metadata)
    size = cfg.data.image_size
    with torch.device("meta"):
        model = build_model(cfg, classes, load_pretrained=False, groups=groups).eval()
        method = build_method(cfg, classes, model=model, num_train=64)
        batch = {"image": torch.empty(BATCH, 3, size, size), "meta": torch.empty(BATCH, meta_dim),
                 "label": torch.zeros(BATCH, dtype=torch.long), "index": torch.arange(BATCH)}
        if cfg.method.name == "priors":  # the location prior, trained on the metadata alone
            assert cfg.method.image_checkpoint and meta_dim
            assert PriorsNet(meta_dim, classes)(batch["meta"]).shape == (BATCH, classes)
        architecture = cfg.model.model_dump(mode="json", exclude={"pretrained"})
        key = json.dumps([architecture, cfg.data.metadata, size, groups, cfg.method.name], sort_keys=True)
        if key in _RUN:
            return
        out = method.predict(model, batch)
    for logits in out.values() if isinstance(out, dict) else [out]:
        assert logits.shape == (BATCH, classes)
    _RUN[key] = None


def test_there_are_configs():
    assert len(CONFIGS) >= 190


def test_the_repository_configs_are_the_package_configs():
    assert ROOT.is_symlink() and ROOT.resolve() == (REPO / "src" / "fgvc" / "configs").resolve()
    package = files("fgvc") / "configs"  # how an installed fgvc finds them
    assert all((package / name).is_file() for name in SHIPPED) and len(SHIPPED) > 200


def test_the_wheel_ships_every_config(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("fgvc-*.whl")
    names = {n.removeprefix("fgvc/configs/") for n in zipfile.ZipFile(wheel).namelist()
             if n.startswith("fgvc/configs/")}
    assert names == set(SHIPPED)


def test_each_erudite_variant_exists_once():
    """table2/ and synthetic/ rows take their variant from erudite/_variants/ and add only a name."""
    from fgvc.experiments.protocol import VARIANTS

    variants = ROOT / "erudite" / "_variants"
    assert sorted(p.stem for p in variants.glob("*.yaml")) == sorted(VARIANTS)
    for folder in ("table2", "synthetic"):
        for variant in VARIANTS:
            row = read_tree(ROOT / "erudite" / folder / f"{variant}.yaml")
            assert set(row) - {"name"} <= {"seed", "data", "model", "method", "optim", "schedule"}
            text = (ROOT / "erudite" / folder / f"{variant}.yaml").read_text()
            assert f"../_variants/{variant}.yaml" in text and "method:" not in text and "model:" not in text
