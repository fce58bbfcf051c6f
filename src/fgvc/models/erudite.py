"""The erudite model (Chang et al., CVPR 2023): one network for several FGVC datasets at once.

It predicts in the union of the datasets' label spaces (dataset ``n`` owns the logits
``offsets[n] … offsets[n] + K_n − 1``). On the backbone's last feature map ``X`` ``[B, C, h, w]``:

- **spatial attention** (optional): ``X' = cat_g(σ(Conv1x1_g(X_g)) ⊙ X_g)`` over ``heads`` channel groups;
- **disentanglement** (optional): one expert per dataset, ``f*_n = GMP(ReLU(BN(Conv1x1(X'))))`` ``[B, C']``,
  each with an auxiliary classifier ``G_n(f*_n)`` over its own dataset's ``K_n`` classes;
- **re-fusion gate**: ``w = softmax_n(reshape_{N×C'}(FC(cat_n f*_n)))``, ``F_c = Σ_n w_{n,c} f*_{n,c}``;
- **joint classifier** ``G(F)`` over ``ΣK_n`` classes.

The paper's comparisons are switches of one head: Baseline (``experts=False, attention=False``: GMP of the
map, joint classifier), Baseline+ (``experts=True, attention=False``), Baseline++ / Ours
(``experts=True, attention=True``; Ours meta-learns the attention — ``meta_parameter_names()`` are its
parameters θ for ``torch.func.functional_call``). Ours_PMG (:class:`EruditeMultiStageNet`) puts the same head
on PMG's multi-stage network in place of PMG's concatenated-stage classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fgvc.models.backbones import Backbone
from fgvc.models.pmsi import MultiStageNet


class SpatialAttention(nn.Module):
    """Multi-head spatial attention: one sigmoid spatial map per channel group, multiplied onto the group.

    Channels split into ``heads`` groups ``X_g`` of ``C/heads``; ``A_g = σ(Conv1x1_g(X_g))`` ``[B, 1, h, w]``;
    output ``cat_g(A_g ⊙ X_g)``. The ``heads`` convolutions ``C/heads → 1`` are one grouped convolution
    ``conv`` (``weight [heads, C/heads, 1, 1]``, ``bias [heads]``): ``C + heads`` parameters.
    Forward ``[B, C, h, w] → [B, C, h, w]``.
    """

    def __init__(self, channels: int, heads: int = 8):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"SpatialAttention: {channels} channels do not split into {heads} heads "
                             "(channels must be a multiple of heads)")
        self.channels = channels
        self.heads = heads
        self.conv = nn.Conv2d(channels, heads, 1, groups=heads)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial maps ``A_g``, ``[B, heads, h, w]`` in (0, 1)."""
        return torch.sigmoid(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b, self.heads, c // self.heads, h, w)
        return (grouped * self.maps(x).unsqueeze(2)).reshape(b, c, h, w)


class Expert(nn.Module):
    """A dataset's disentanglement expert: ``f*_n = GMP(ReLU(BN(Conv1x1(C → C'))))``, forward ``→ [B, C']``.

    The convolution has no bias (BN follows): ``C·C' + 2C'`` parameters.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The expert's map before pooling, ``[B, C', h, w]``."""
        return self.block(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x).amax(dim=(2, 3))


class ReFusionGate(nn.Module):
    """Per-channel softmax over the datasets of a fully connected layer on the concatenated expert features.

    ``w = softmax_n(reshape_{N×C}(FC(cat_n f*_n)))`` with ``FC: Linear(N·C → N·C)`` (``(N·C)² + N·C``
    parameters), so ``Σ_n w_{n,c} = 1``; output ``F_c = Σ_n w_{n,c} f*_{n,c}``. ``features`` is a sequence of
    ``N`` tensors ``[B, C]`` or one ``[B, N, C]`` tensor; forward ``→ [B, C]``, ``weights(features) → [B, N, C]``.
    """

    def __init__(self, channels: int, num_datasets: int):
        super().__init__()
        self.channels = channels
        self.num_datasets = num_datasets
        self.fc = nn.Linear(num_datasets * channels, num_datasets * channels)

    def _stack(self, features: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        stacked = features if isinstance(features, torch.Tensor) else torch.stack(list(features), 1)
        if stacked.dim() != 3 or stacked.shape[1:] != (self.num_datasets, self.channels):
            raise ValueError(f"ReFusionGate({self.channels}, {self.num_datasets}) expects {self.num_datasets} "
                             f"features of {self.channels} channels, got shape {tuple(stacked.shape)} "
                             "(as [B, N, C])")
        return stacked

    def _weights(self, stacked: torch.Tensor) -> torch.Tensor:
        logits = self.fc(stacked.flatten(1)).view_as(stacked)
        return torch.softmax(logits, dim=1)

    def weights(self, features: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The fusion weights ``w`` ``[B, N, C]``; they sum to 1 over the datasets (dim 1)."""
        return self._weights(self._stack(features))

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        stacked = self._stack(features)
        return (self._weights(stacked) * stacked).sum(1)


class EruditeHead(nn.Module):
    """Attention, experts, gate and classifiers on a backbone feature map ``[B, in_channels, h, w]``.

    ``groups`` are the class counts ``K_n`` of the datasets, in label-space order (``offsets[n] = Σ_{m<n} K_m``).
    ``expert_channels`` is C' (``None``: C' = ``in_channels``, as in the paper; the released code uses 512).
    Without ``experts`` the map is globally max-pooled straight into the joint classifier (the Baseline) and
    ``expert_channels`` is unused. Forward returns ``{"logits": [B, ΣK], "features": F}`` plus, with experts,
    ``"aux"``: the ``N`` auxiliary logits ``[B, K_n]`` (each over its dataset's own, local labels).

    Parameters (C, C', N datasets, H heads): attention ``C + H``; experts ``N(C·C' + 2C')``; auxiliary
    classifiers ``Σ_n (C' + 1)·K_n``; gate ``(N·C')² + N·C'``; joint classifier ``(D + 1)·ΣK`` with D = C'
    (experts) or C (Baseline).
    """

    def __init__(self, in_channels: int, groups: Sequence[int], expert_channels: int | None = None,
                 attention: bool = True, experts: bool = True, heads: int = 8):
        super().__init__()
        groups = [int(k) for k in groups]
        if not groups or min(groups) < 1:
            raise ValueError(f"EruditeHead: groups must list each dataset's class count (all ≥ 1), got {groups}")
        if expert_channels is not None and expert_channels < 1:
            raise ValueError(f"EruditeHead: expert_channels must be ≥ 1 or None, got {expert_channels}")
        self.in_channels = in_channels
        self.groups = groups
        self.offsets = [sum(groups[:n]) for n in range(len(groups))]
        self.num_classes = sum(groups)
        self.attention = SpatialAttention(in_channels, heads) if attention else None
        if experts:
            width = expert_channels or in_channels
            self.experts = nn.ModuleList(Expert(in_channels, width) for _ in groups)
            self.aux_classifiers = nn.ModuleList(nn.Linear(width, k) for k in groups)
            self.gate = ReFusionGate(width, len(groups))
        else:
            width = in_channels
            self.experts = self.aux_classifiers = self.gate = None
        self.feature_dim = width
        self.classifier = nn.Linear(width, self.num_classes)

    def attended(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The feature map after the spatial attention (unchanged without it)."""
        return self.attention(feature_map) if self.attention is not None else feature_map

    def forward(self, feature_map: torch.Tensor, aux: bool = True) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``aux=False`` (inference) skips the auxiliary classifiers: they only serve training."""
        x = self.attended(feature_map)
        if self.experts is None:
            fused = x.amax(dim=(2, 3))
            return {"logits": self.classifier(fused), "features": fused}
        expert_features = [expert(x) for expert in self.experts]
        fused = self.gate(expert_features)
        out = {"logits": self.classifier(fused), "features": fused}
        if aux:
            out["aux"] = [classifier(f) for classifier, f in zip(self.aux_classifiers, expert_features)]
        return out

    def attention_parameters(self) -> list[nn.Parameter]:
        """θ, the meta-learned parameters: the spatial attention's (empty without attention)."""
        return list(self.attention.parameters()) if self.attention is not None else []

    def meta_parameter_names(self) -> list[str]:
        """θ's dotted names relative to the head, as ``torch.func.functional_call`` takes them."""
        if self.attention is None:
            return []
        return [f"attention.{name}" for name, _ in self.attention.named_parameters()]


class HierarchicalHead(nn.Module):
    """The hierarchical multi-task baseline: which dataset, then which class within it.

    Max-pooled features feed a coarse classifier over the N datasets and one classifier per dataset;
    the union's log-probabilities are ``log p(n) + log p(y | n)``, so cross-entropy on them is the
    coarse loss plus the sample's own dataset-head loss, and the argmax is the hierarchical decision.
    """

    def __init__(self, in_channels: int, groups: Sequence[int]):
        super().__init__()
        self.groups = list(groups)
        self.num_classes = sum(self.groups)
        self.coarse = nn.Linear(in_channels, len(self.groups))
        self.classifiers = nn.ModuleList(nn.Linear(in_channels, k) for k in self.groups)

    def forward(self, feature_map: torch.Tensor, aux: bool = True) -> dict[str, torch.Tensor]:
        pooled = feature_map.amax(dim=(2, 3))
        dataset = torch.log_softmax(self.coarse(pooled), dim=1)
        union = [dataset[:, n:n + 1] + torch.log_softmax(head(pooled), dim=1)
                 for n, head in enumerate(self.classifiers)]
        return {"logits": torch.cat(union, 1), "features": pooled}

    def attention_parameters(self) -> list[nn.Parameter]:
        return []

    def meta_parameter_names(self) -> list[str]:
        return []


class JointHeadModel:
    """What the erudite method reads of a model with an erudite ``head`` on its ``backbone``'s last map:
    ``features`` (the map), ``forward_train`` (the head's dict), ``forward`` (joint logits, auxiliary
    classifiers skipped) and θ (``attention_parameters``, ``meta_parameter_names`` relative to the model)."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map ``[B, C, h, w]``."""
        return self.backbone.feature_map(images)

    def forward_train(self, images: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        return self.head(self.features(images))

    def forward(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(images), aux=False)["logits"]

    def attention_parameters(self) -> list[nn.Parameter]:
        return self.head.attention_parameters()

    def meta_parameter_names(self) -> list[str]:
        """θ's dotted names relative to this model (``head.attention.…``)."""
        return [f"head.{name}" for name in self.head.meta_parameter_names()]


class EruditeNet(JointHeadModel, nn.Module):
    """Backbone + :class:`EruditeHead` on its last feature map.

    ``forward(images)`` gives the joint logits ``[B, ΣK]`` (what evaluation, export and CAM see; ``meta`` is
    accepted and ignored so every model shares one signature); ``forward_train(images)`` the head's dict.
    """

    def __init__(self, backbone: Backbone, groups: Sequence[int], expert_channels: int | None = None,
                 attention: bool = True, experts: bool = True, heads: int = 8, hierarchical: bool = False):
        super().__init__()
        self.backbone = backbone
        # the map's width is the body's (a pre-logits head may widen only the pooled vector)
        width = backbone.body.num_features
        self.head = (HierarchicalHead(width, groups) if hierarchical
                     else EruditeHead(width, groups, expert_channels, attention, experts, heads))
        self.groups = self.head.groups
        self.num_classes = self.head.num_classes

    def new_parameters(self) -> list[nn.Parameter]:
        """The head's parameters (they get ``optim.lr``; the backbone ``optim.backbone_lr``)."""
        return list(self.head.parameters())


class EruditeMultiStageNet(JointHeadModel, MultiStageNet):
    """Ours_PMG: PMG's multi-stage network with the erudite head as its final classifier.

    PMG's ``S`` stage classifiers (smooth conv, max pooling, BN-ELU MLP; with ``interaction`` the M of
    RMG-PMSI) stay and learn in progressive phases on jigsaw inputs; PMG's classifier on the
    concatenated stage vectors is replaced by :class:`EruditeHead` on the deepest backbone map, trained
    in the last phase on the whole image with ``L_all`` (and the meta-learned attention). The paper
    gives no more detail than "on top of PMG"; this is the reading that keeps both methods intact.

    ``forward_all(images)`` returns ``[ŷ_1 … ŷ_S, ŷ_joint]`` (PMG's phases index it); the rest is
    :class:`JointHeadModel`'s, so the erudite method runs unchanged.
    """

    def __init__(self, backbone: Backbone, groups: Sequence[int], stages: int = 3, hidden: int = 512,
                 channels: int | None = None, interaction: bool = False, expert_channels: int | None = None,
                 attention: bool = True, experts: bool = True, heads: int = 8, bn_momentum: float = 0.1):
        super().__init__(backbone, sum(groups), stages, hidden, channels, interaction, bn_momentum)
        del self.concat_classifier
        self.head = EruditeHead(backbone.body.num_features, groups, expert_channels, attention, experts, heads)
        self.groups = self.head.groups
        self.num_classes = self.head.num_classes

    def forward_all(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = self.stage_maps(images)
        vectors = self.pool([block(x) for block, x in zip(self.blocks, maps)])
        return [c(v) for c, v in zip(self.classifiers, vectors)] + [self.head(maps[-1], aux=False)["logits"]]
