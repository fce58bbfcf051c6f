"""Every experiment config shipped in configs/ loads and validates."""

from pathlib import Path

import pytest

from fgvc.config import load_config

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_validates(path):
    cfg = load_config(path)
    assert cfg.name and (cfg.data.root or len(cfg.data.joint) >= 2)


def test_there_are_configs():
    assert len(CONFIGS) >= 6
