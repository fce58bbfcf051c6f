"""Training methods: each turns a batch into a loss (or runs its own updates) and into predictions.

Every module of this package that defines a ``Method`` subclass is a method (``fgvc.methods.base``):
adding one is adding a module here. They are imported below, so that the config and the trainer know
them all once ``fgvc.methods`` is imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from fgvc.methods.base import METHODS, Method

if TYPE_CHECKING:
    from torch import nn

    from fgvc.config import Config

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "Method", "build_method", "method_class"]


def method_class(cfg: Config) -> type[Method]:
    """The class of ``cfg.method.name``."""
    return METHODS[cfg.method.name]


def build_method(cfg: Config, num_classes: int, model: nn.Module | None = None,
                 num_train: int | None = None) -> Method:
    """``model`` and ``num_train`` (the training split's size): for training, to methods with their own
    layers and per-sample state (CTC's embedding heads and memory banks); prediction needs neither."""
    return method_class(cfg)(cfg, num_classes, model, num_train)
