"""Multi-stage models of PMG (Du et al., ECCV 2020) and RMG-PMSI (BMVC 2022) on any timm backbone.

The last ``stages`` feature maps of the backbone each go through a smooth conv block and global max
pooling to a ``c``-vector ``x_n``. With ``interaction`` (the M of RMG-PMSI) a mutual vector
``x_m = MLP(cat(x_1 … x_S))`` gates every stage: ``m_n = x_n + sigmoid(x_m * x_n) * x_n``; without it
(PMG) ``m_n = x_n``. Each stage has its own classifier and one more reads ``cat(m_1 … m_S)``.

The deepest map is the backbone's ``forward_features`` output — for ResNets the last stage, for
MobileNets the 1×1 head convolution after it (1280 channels for MobileNetV2, so ``c = 640`` as in the
paper); shallower ones are timm's stage outputs (``forward_intermediates``).
"""

from __future__ import annotations

import torch
from torch import nn

from fgvc.models.backbones import Backbone


class SmoothConv(nn.Sequential):
    """1×1 conv to ``hidden`` + BN + ReLU, then 3×3 conv to ``out_channels`` + BN + ReLU (PMG's block).

    ``bn_momentum``: PyTorch's 0.1 by default; both releases build these BatchNorms with 0.01, so
    their running statistics follow the training batches ten times more slowly.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, bn_momentum: float = 0.1):
        super().__init__(
            nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden, momentum=bn_momentum),
            nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=bn_momentum), nn.ReLU(inplace=True))


class StageClassifier(nn.Sequential):
    """BN1d, Linear(→hidden), BN1d, ELU, Linear(→classes)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int):
        super().__init__(nn.BatchNorm1d(in_features), nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden),
                         nn.ELU(inplace=True), nn.Linear(hidden, num_classes))


class MultiStageInteraction(nn.Module):
    """Gates each stage vector by its agreement with a mutual vector of all stages.

    ``x_m = Linear(hidden→c)(dropout(Linear(S·c→hidden)(cat(x_n))))``, ``g_n = σ(x_m ⊙ x_n)``,
    ``m_n = x_n + g_n ⊙ x_n``. Forward: list of ``S`` tensors ``[B, c]`` → list of ``S`` tensors ``[B, c]``.
    """

    def __init__(self, channels: int, hidden: int, num_stages: int = 3, dropout: float = 0.5):
        super().__init__()
        self.mutual = nn.Sequential(nn.Linear(num_stages * channels, hidden), nn.Dropout(dropout),
                                    nn.Linear(hidden, channels))

    def forward(self, stage_vectors: list[torch.Tensor]) -> list[torch.Tensor]:
        mutual = self.mutual(torch.cat(stage_vectors, 1))
        return [x + torch.sigmoid(mutual * x) * x for x in stage_vectors]


class MultiStageNet(nn.Module):
    """Backbone + per-stage smooth conv, max pooling, optional interaction, S+1 classifiers.

    ``forward_all(images)`` returns ``[ŷ_1 … ŷ_S, ŷ_concat]``; ``forward(images)`` returns ``ŷ_concat``
    (the ``P_concat`` prediction, and what export and CAM see). ``meta`` is accepted and ignored so
    every model shares one signature.
    """

    def __init__(self, backbone: Backbone, num_classes: int, stages: int = 3, hidden: int = 512,
                 channels: int | None = None, interaction: bool = True, bn_momentum: float = 0.1):
        super().__init__()
        in_channels = stage_channels(backbone, stages)
        channels = channels or in_channels[-1] // 2
        self.backbone = backbone
        self.stages = stages
        self.indices = list(range(len(backbone.body.feature_info) - stages, len(backbone.body.feature_info) - 1))
        self.blocks = nn.ModuleList(SmoothConv(c, hidden, channels, bn_momentum) for c in in_channels)
        self.interaction = MultiStageInteraction(channels, hidden, stages) if interaction else None
        self.classifiers = nn.ModuleList(StageClassifier(channels, hidden, num_classes) for _ in range(stages))
        self.concat_classifier = StageClassifier(stages * channels, hidden, num_classes)

    def stage_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The last ``stages`` feature maps, shallow to deep."""
        if not self.indices:
            return [self.backbone.feature_map(images)]
        final, intermediates = self.backbone.body.forward_intermediates(images, indices=self.indices)
        return [*intermediates, final]

    def smooth_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's map after its smooth conv block (what the stage's classifier pools)."""
        return [block(x) for block, x in zip(self.blocks, self.stage_maps(images))]

    def pool(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Global max pooling, then the interaction when there is one: ``m_1 … m_S``."""
        vectors = [m.amax(dim=(2, 3)) for m in maps]
        return self.interaction(vectors) if self.interaction is not None else vectors

    def stage_vectors(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.pool(self.smooth_maps(images))

    def forward_all(self, images: torch.Tensor) -> list[torch.Tensor]:
        vectors = self.stage_vectors(images)
        logits = [classifier(v) for classifier, v in zip(self.classifiers, vectors)]
        return logits + [self.concat_classifier(torch.cat(vectors, 1))]

    def forward(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.concat_classifier(torch.cat(self.stage_vectors(images), 1))

    def new_parameters(self) -> list[nn.Parameter]:
        """Everything but the backbone (it gets ``optim.lr``; the backbone ``optim.backbone_lr``)."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]


def stage_channels(backbone: Backbone, stages: int) -> list[int]:
    """Channels of the last ``stages`` maps; the deepest is ``forward_features``' width."""
    info = backbone.body.feature_info
    available = len(info)
    if not 1 <= stages <= available:
        raise ValueError(f"{backbone.name} has {available} stages; model.multi_stage.stages must be 1..{available}, "
                         f"not {stages}")
    return [info[i]["num_chs"] for i in range(available - stages, available - 1)] + [backbone.body.num_features]
