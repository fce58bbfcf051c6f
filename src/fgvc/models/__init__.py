"""Model construction from a config: image-only, metadata fusion (Dynamic MLP and baselines), multi-stage (PMSI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from fgvc.data.metadata import metadata_dim
from fgvc.errors import ConfigError
from fgvc.models.backbones import Backbone
from fgvc.models.erudite import EruditeMultiStageNet, EruditeNet
from fgvc.models.fusion import FusionClassifier, build_fusion_head
from fgvc.models.heads import ImageClassifier
from fgvc.models.pmsi import MultiStageNet

if TYPE_CHECKING:
    from fgvc.config import Config


def build_model(cfg: Config, num_classes: int, load_pretrained: bool = True,
                groups: list[int] | None = None) -> nn.Module:
    """``load_pretrained=False`` when a checkpoint's weights will replace them anyway (evaluation).

    ``groups``: class counts per dataset of a joint label space (the erudite head); default one group.
    """
    backbone = Backbone(cfg.model.backbone, cfg.model.pretrained if load_pretrained else None,
                        announce=load_pretrained)
    if cfg.model.head == "multi_stage":
        ms = cfg.model.multi_stage
        try:
            return MultiStageNet(backbone, num_classes, ms.stages, ms.hidden, ms.channels, ms.interaction,
                                 ms.bn_momentum)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if cfg.model.head == "erudite":
        e, ms = cfg.model.erudite, cfg.model.multi_stage
        try:
            if e.multi_stage:
                return EruditeMultiStageNet(backbone, groups or [num_classes], ms.stages, ms.hidden, ms.channels,
                                            ms.interaction, e.expert_channels, e.attention, e.experts, e.heads,
                                            ms.bn_momentum)
            return EruditeNet(backbone, groups or [num_classes], e.expert_channels, e.attention, e.experts, e.heads,
                              e.hierarchical)
        except ValueError as exc:
            raise ConfigError(f"model.erudite: {exc}") from None
    if cfg.model.fusion.name == "none":
        return ImageClassifier(backbone, num_classes, cfg.model.drop_rate)
    head = build_fusion_head(cfg.model.fusion, backbone.num_features, metadata_dim(cfg.data.metadata), num_classes)
    return FusionClassifier(backbone, head)

