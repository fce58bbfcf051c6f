"""Training methods: each turns a batch into a loss (or runs its own updates) and into predictions."""

from __future__ import annotations

from fgvc.config import Config
from fgvc.methods.ctc import CTC
from fgvc.methods.erudite import Erudite
from fgvc.methods.progressive import Progressive
from fgvc.methods.supervised import Supervised


def build_method(cfg: Config, num_classes: int, model=None, num_train: int | None = None):
    """``model`` and ``num_train`` (the training split's size): for training, to methods with their own
    layers and per-sample state (CTC's embedding heads and memory banks); prediction needs neither."""
    if cfg.method.name == "ctc":
        return CTC(cfg, num_classes, model, num_train)
    if cfg.method.name == "progressive":
        return Progressive(cfg, num_classes)
    if cfg.method.name == "erudite":
        return Erudite(cfg, num_classes)
    return Supervised(cfg, num_classes)
