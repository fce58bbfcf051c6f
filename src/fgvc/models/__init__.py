"""Model construction from a config."""

from __future__ import annotations

from torch import nn

from fgvc.config import Config
from fgvc.models.backbones import Backbone
from fgvc.models.heads import ImageClassifier


def build_model(cfg: Config, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    """``load_pretrained=False`` when a checkpoint's weights will replace them anyway (evaluation)."""
    backbone = Backbone(cfg.model.backbone, cfg.model.pretrained if load_pretrained else None,
                        announce=load_pretrained)
    return ImageClassifier(backbone, num_classes, cfg.model.drop_rate)
