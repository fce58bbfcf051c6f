"""Training methods: each turns a batch into a loss and into predictions."""

from __future__ import annotations

from fgvc.config import Config
from fgvc.methods.supervised import Supervised


def build_method(cfg: Config, num_classes: int) -> Supervised:
    return Supervised(cfg, num_classes)
