"""Training methods: each turns a batch into a loss (or runs its own updates) and into predictions."""

from __future__ import annotations

from fgvc.config import Config


def build_method(cfg: Config, num_classes: int):
    if cfg.method.name == "progressive":
        from fgvc.methods.progressive import Progressive

        return Progressive(cfg, num_classes)
    if cfg.method.name == "erudite":
        from fgvc.methods.erudite import Erudite

        return Erudite(cfg, num_classes)
    from fgvc.methods.supervised import Supervised

    return Supervised(cfg, num_classes)
