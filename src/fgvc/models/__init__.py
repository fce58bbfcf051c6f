"""Model construction from a config."""

from __future__ import annotations

from torch import nn

from fgvc.config import Config
from fgvc.models.backbones import Backbone
from fgvc.models.heads import ImageClassifier


def build_model(cfg: Config, num_classes: int) -> nn.Module:
    backbone = Backbone(cfg.model.backbone, cfg.model.pretrained)
    return ImageClassifier(backbone, num_classes, cfg.model.drop_rate)
