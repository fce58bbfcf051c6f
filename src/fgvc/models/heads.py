"""Classification heads, and the image-only classifier (backbone + linear head)."""

from __future__ import annotations

import torch
from torch import nn

from fgvc.models.backbones import Backbone


class LinearHead(nn.Sequential):
    """Dropout (optional) then Linear: the classifier of every image-only baseline."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        layers: list[nn.Module] = [nn.Dropout(drop_rate)] if drop_rate > 0 else []
        super().__init__(*layers, nn.Linear(in_features, num_classes))


class ImageClassifier(nn.Module):
    """Backbone + linear head. ``meta`` is accepted and ignored so every model shares one signature."""

    def __init__(self, backbone: Backbone, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = LinearHead(backbone.num_features, num_classes, drop_rate)

    def forward(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(images))

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that did not come with the backbone (they get ``optim.lr``)."""
        return list(self.head.parameters())
