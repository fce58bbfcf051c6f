"""Geo-temporal fusion: the location encoder, Dynamic MLP (A/B/C) and the baselines it is compared with.

Dynamic MLP (Yang et al., "Dynamic MLP for Fine-Grained Image Classification by Leveraging Geographical
and Temporal Information", CVPR 2022) turns the metadata embedding z_e into per-sample projection
matrices that act on the image feature z_i (docs/methods/dynamic_mlp.md). Module and parameter names
follow the authors' release (``loc_net``, ``loc_att``, ``conv1``, ``conv2.<i>.dynamic_conv.conv11`` ...)
and are registered in their order, so converting their checkpoint (``fgvc.deploy.convert``) is a plain
key mapping.

Every fusion head has one interface, ``head(img_feat [B, D], meta [B, meta_in]) -> logits`` where ``meta``
is the raw encoded metadata (``fgvc.data.metadata.encode_metadata``: 6, 4 or 2 values) and each head owns
its ``LocationEncoder``. ``FUSIONS`` names them: one entry per value of ``model.fusion.name`` (the
config's allowed values are its keys), and ``build_fusion_head`` builds the one ``model.fusion`` names.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fgvc.errors import ConfigError
from fgvc.sections import Section

VARIANTS = ("a", "b", "c")
CAT_INPUTS = ("both", "image", "weight")
COMBINES = ("matmul", "concat", "add", "mul")


class ResLayer(nn.Module):
    """``x + ReLU(w2(Dropout(ReLU(w1(x)))))`` — the residual layer of the geo-prior network."""

    def __init__(self, width: int, dropout: float = 0.5):
        super().__init__()
        self.w1 = nn.Linear(width, width)
        self.w2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.w2(self.dropout(torch.relu(self.w1(x)))))


class LocationEncoder(nn.Module):
    """The multimodal path: Linear(in→width)+ReLU, ``n_res`` residual layers, bias-free Linear(width→out).

    ``feats`` / ``class_emb`` are the names of the authors' ``loc_net`` (``feats.0`` the first Linear,
    ``feats.2..`` the residual layers), so their weights load by name.
    """

    def __init__(self, in_dim: int = 6, width: int = 256, out_dim: int = 256, n_res: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        self.feats = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(inplace=True),
                                   *[ResLayer(width, dropout) for _ in range(n_res)])
        self.class_emb = nn.Linear(width, out_dim, bias=False)
        self.out_dim = out_dim

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.class_emb(self.feats(meta))


# --- Dynamic MLP --------------------------------------------------------------------------------

class LinearAct(nn.Module):
    """Linear + ReLU, or bias-free Linear + LayerNorm + ReLU with ``norm=True``.

    The authors' ``Basic1d``; the Sequential is called ``conv`` with children ``0`` and ``ln`` because
    their checkpoint keys are ``conv11.conv.0.weight``, ``conv3.conv.ln.weight`` ...
    """

    def __init__(self, in_dim: int, out_dim: int, norm: bool = False):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            [("0", nn.Linear(in_dim, out_dim, bias=not norm))])
        if norm:
            layers["ln"] = nn.LayerNorm(out_dim)
        layers["relu"] = nn.ReLU()
        self.conv = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _project(x: torch.Tensor, weight: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """The per-instance product ``x[b] @ W[b]`` with ``W[b] = weight[b].view(p, q)`` (one batched matmul)."""
    return torch.bmm(x.unsqueeze(1), weight.view(-1, p, q)).squeeze(1)


class DynamicBlockA(nn.Module):
    """Variant A: ``W = reshape(Linear(m → p·q)(z_e), [p, q])``, ``ReLU(LN_q(x @ W))``."""

    def __init__(self, p: int, q: int, m: int):
        super().__init__()
        self.p, self.q = p, q
        self.get_weight = nn.Linear(m, p * q)
        self.norm = nn.LayerNorm(q)

    def forward(self, x: torch.Tensor, meta_feat: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(_project(x, self.get_weight(meta_feat), self.p, self.q)))


class DynamicBlockBC(nn.Module):
    """Variants B and C: an image branch and a weight branch, then their product.

    Image branch ``conv12(ReLU(conv11(·)))`` (p → p), weight branch ``conv22(ReLU(conv21(·)))``
    (→ p·q, viewed as ``W [p, q]``), ``y = ReLU(LN_q(img @ W))``, then ``conv3``: bias-free Linear(q→q),
    LayerNorm, ReLU. B feeds x to the image branch and z_e to the weight branch; C feeds ``cat(x, z_e)``
    to both. ``cat_image`` / ``cat_weight`` select the branches that get the concatenation (Table 5).

    ``combine`` ≠ "matmul" is the same-structure ablation of Table S5: both branches end in width q
    (``conv12`` p→q, ``conv22`` p→q instead of p→p·q) and ``img @ W`` becomes ``cat(img, w)`` (width
    2q, which ``br`` and ``conv3`` then read), ``img + w`` or ``img * w``; everything else is unchanged.
    """

    def __init__(self, p: int, q: int, m: int, cat_image: bool = True, cat_weight: bool = True,
                 combine: str = "matmul"):
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, not {combine!r}")
        self.p, self.q = p, q
        self.cat_image, self.cat_weight, self.combine = cat_image, cat_weight, combine
        dynamic = combine == "matmul"
        self.conv11 = LinearAct(p + m if cat_image else p, p)
        self.conv12 = nn.Linear(p, p if dynamic else q)
        self.conv21 = LinearAct(p + m if cat_weight else m, p)
        self.conv22 = nn.Linear(p, p * q if dynamic else q)
        mixed = 2 * q if combine == "concat" else q
        self.br = nn.Sequential(nn.LayerNorm(mixed), nn.ReLU())
        self.conv3 = LinearAct(mixed, q, norm=True)

    def forward(self, x: torch.Tensor, meta_feat: torch.Tensor) -> torch.Tensor:
        both = torch.cat([x, meta_feat], 1) if self.cat_image or self.cat_weight else None
        img = self.conv12(self.conv11(both if self.cat_image else x))
        weight = self.conv22(self.conv21(both if self.cat_weight else meta_feat))
        if self.combine == "matmul":
            y = _project(img, weight, self.p, self.q)
        elif self.combine == "concat":
            y = torch.cat([img, weight], 1)
        elif self.combine == "add":
            y = img + weight
        else:
            y = img * weight
        return self.conv3(self.br(y))


class RecursiveBlock(nn.Module):
    """One recursion: the block is fed the current image feature and the *original* z_e.

    Only a wrapper so the keys read ``conv2.<i>.dynamic_conv.*`` as in the authors' checkpoint.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.dynamic_conv = block

    def forward(self, x: torch.Tensor, meta_feat: torch.Tensor) -> torch.Tensor:
        return self.dynamic_conv(x, meta_feat)


class DynamicMLP(nn.Module):
    """Dynamic MLP: ``z_i + LN_D(Linear(d→D)(blocks(Linear(D→d)(z_i), z_e)))``.

    ``n`` recursive blocks of widths d→h, h→h, …, h→d (n=1: d→d), each reading the original ``z_e``.
    ``variant`` picks the block (A/B/C); ``cat_input`` ("both" | "image" | "weight") says which branches
    of a C block read ``cat(x, z_e)`` (Table 5 ablation); ``combine`` ≠ "matmul" replaces the
    per-instance matrix product by concat/add/mul (Table S5, variants B/C only).

    The authors' ``FusionModule`` agrees with the paper; it also fixes what the paper leaves open, and so
    does this module: no activation after the reduction ``conv1``, ``norm3`` applied before the skip is added,
    ``meta_dim`` = d in their model (their location encoder ends in ``class_emb: 256 → d``); here any
    ``meta_dim`` works.
    """

    def __init__(self, img_dim: int, meta_dim: int, d: int = 256, h: int = 64, n: int = 2,
                 variant: str = "c", cat_input: str = "both", combine: str = "matmul"):
        super().__init__()
        variant = variant.lower()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if cat_input not in CAT_INPUTS:
            raise ValueError(f"cat_input must be one of {CAT_INPUTS}, not {cat_input!r}")
        if cat_input != "both" and variant != "c":
            raise ValueError(f"cat_input={cat_input} applies to variant c only (variant={variant})")
        if combine != "matmul" and variant == "a":
            raise ValueError(f"combine={combine} (the Table S5 ablation) needs variant b or c, not a")
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        self.variant, self.cat_input, self.combine = variant, cat_input, combine
        widths = [d, d] if n == 1 else [d] + [h] * (n - 1) + [d]

        def block(p: int, q: int) -> nn.Module:
            if variant == "a":
                return DynamicBlockA(p, q, meta_dim)
            return DynamicBlockBC(p, q, meta_dim, cat_image=variant == "c" and cat_input != "weight",
                                  cat_weight=variant == "c" and cat_input != "image", combine=combine)

        self.conv1 = nn.Linear(img_dim, d)
        self.conv2 = nn.ModuleList(RecursiveBlock(block(p, q)) for p, q in pairwise(widths))
        self.conv3 = nn.Linear(d, img_dim)
        self.norm3 = nn.LayerNorm(img_dim)

    def forward(self, img_feat: torch.Tensor, meta_feat: torch.Tensor) -> torch.Tensor:
        x = self.conv1(img_feat)
        for recursion in self.conv2:
            x = recursion(x, meta_feat)
        return self.norm3(self.conv3(x)) + img_feat


# --- attention fusion (Table S3) ----------------------------------------------------------------

class AttentionFusion(nn.Module):
    """Scaled dot-product attention between the two modalities, in Dynamic MLP's place (Table S3).

    Tokens: z_i is projected to d (``img_proj``, like Dynamic MLP's reduction) and z_e to d
    (``meta_proj``); each d-vector is split into ``tokens`` tokens of width d/tokens (8 tokens of 32 for
    d=256) — with a single token per modality, softmax over one key would be 1 and cross-attention would
    ignore the query. A learned position embedding (image tokens first) marks token index and modality.
    ``query`` = "image": Q from the image tokens, K=V from the metadata tokens; "meta": the reverse;
    "cat": self-attention over the 2·tokens concatenated tokens. One head (``nn.MultiheadAttention``,
    which owns the Q/K/V/out projections), a residual on the query stream, then as in Dynamic MLP:
    flatten, Linear(→D), LayerNorm, and the skip connection adding z_i.
    """

    def __init__(self, img_dim: int, meta_dim: int, d: int = 256, query: str = "image", tokens: int = 8):
        super().__init__()
        if query not in ("image", "meta", "cat"):
            raise ValueError(f"query must be image, meta or cat, not {query!r}")
        self.query = query
        self.tokens = math.gcd(d, tokens)
        width = d // self.tokens
        self.img_proj = nn.Linear(img_dim, d)
        self.meta_proj = nn.Linear(meta_dim, d)
        self.pos = nn.Parameter(torch.zeros(1, 2 * self.tokens, width))
        self.attn = nn.MultiheadAttention(width, num_heads=1, batch_first=True)
        self.conv3 = nn.Linear(2 * d if query == "cat" else d, img_dim)
        self.norm3 = nn.LayerNorm(img_dim)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, img_feat: torch.Tensor, meta_feat: torch.Tensor) -> torch.Tensor:
        b, t = img_feat.shape[0], self.tokens
        img = self.img_proj(img_feat).view(b, t, -1) + self.pos[:, :t]
        meta = self.meta_proj(meta_feat).view(b, t, -1) + self.pos[:, t:]
        if self.query == "image":
            q, kv = img, meta
        elif self.query == "meta":
            q, kv = meta, img
        else:
            q = kv = torch.cat([img, meta], 1)
        y = q + self.attn(q, kv, kv, need_weights=False)[0]
        return self.norm3(self.conv3(y.flatten(1))) + img_feat


# --- heads --------------------------------------------------------------------------------------

class ResidualMLP(nn.Module):
    """``x + LN(fc2(ReLU(fc1(x))))``: the extra layers of the "compensated" baselines.

    ``ResidualMLP.matching(dim, params)`` picks the hidden width whose parameter count
    ``2·dim·k + k + 3·dim`` comes closest to ``params``. Per sample a Linear costs as many MACs as it
    has weights, and so does Dynamic MLP up to its small ``x @ W`` products, so matching parameters
    matches FLOPs too.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def matching(cls, dim: int, params: int) -> ResidualMLP:
        return cls(dim, max(1, round((params - 3 * dim) / (2 * dim + 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.fc2(torch.relu(self.fc1(x))))


def _extra(dim: int, params: int) -> nn.Module:
    return ResidualMLP.matching(dim, params) if params > 0 else nn.Identity()


class FusionHead(nn.Module):
    """``fc(loc_att(z_i, loc_net(meta)))``: Dynamic MLP, its Table S5 ablations and attention fusion.

    As in the authors' model the classifier reads the fused D-dimensional feature.
    """

    def __init__(self, loc_net: LocationEncoder, loc_att: nn.Module, img_dim: int, num_classes: int):
        super().__init__()
        self.loc_net = loc_net
        self.loc_att = loc_att
        self.fc = nn.Linear(img_dim, num_classes)

    def fused_features(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.loc_att(img_feat, self.loc_net(meta))

    def forward(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fused_features(img_feat, meta))


class ConcatHead(nn.Module):
    """ConcatNet: ``fc(cat(z_i, z_e))``; with ``extra_params`` a ``ResidualMLP`` of that size first."""

    def __init__(self, loc_net: LocationEncoder, img_dim: int, num_classes: int, extra_params: int = 0):
        super().__init__()
        width = img_dim + loc_net.out_dim
        self.loc_net = loc_net
        self.mlp = _extra(width, extra_params)
        self.fc = nn.Linear(width, num_classes)

    def fused_features(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([img_feat, self.loc_net(meta)], 1))

    def forward(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fused_features(img_feat, meta))


class LateFusionHead(nn.Module):
    """Two classifiers, one per modality, joined at the output.

    ``mode="add"``: logits ``fc(z_i) + fc_meta(z_e)``. ``mode="mul"`` (EnsembleNet): probabilities
    multiplied, returned as log-probabilities ``log_softmax(fc(z_i)) + log_softmax(fc_meta(z_e))`` —
    softmax of that is the normalised product, so cross-entropy training and argmax work unchanged.
    ``extra_params`` adds a ``ResidualMLP`` on the image path (the larger one) before ``fc``.
    """

    def __init__(self, loc_net: LocationEncoder, img_dim: int, num_classes: int, mode: str = "add",
                 extra_params: int = 0):
        super().__init__()
        if mode not in ("add", "mul"):
            raise ValueError(f"mode must be add or mul, not {mode!r}")
        self.mode = mode
        self.loc_net = loc_net
        self.mlp = _extra(img_dim, extra_params)
        self.fc = nn.Linear(img_dim, num_classes)
        self.fc_meta = nn.Linear(loc_net.out_dim, num_classes)

    def fused_features(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        """There is no joint feature: the two classifiers' inputs, concatenated."""
        return torch.cat([self.mlp(img_feat), self.loc_net(meta)], 1)

    def forward(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        img, loc = self.fc(self.mlp(img_feat)), self.fc_meta(self.loc_net(meta))
        if self.mode == "add":
            return img + loc
        return F.log_softmax(img, dim=1) + F.log_softmax(loc, dim=1)


class FusionClassifier(nn.Module):
    """Backbone + fusion head: ``head(backbone(images), meta)``.

    ``meta=None`` means every sample's metadata is missing: the all-zero vector (the paper's rule).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def _meta(self, images: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        if meta is not None:
            return meta
        return images.new_zeros(images.shape[0], self.head.loc_net.feats[0].in_features)

    def forward(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(images), self._meta(images, meta))

    def fused_features(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """The representation the final Linear reads (for t-SNE and friends)."""
        return self.head.fused_features(self.backbone(images), self._meta(images, meta))

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that did not come with the backbone (they get ``optim.lr``)."""
        return list(self.head.parameters())


# --- construction from the config ---------------------------------------------------------------

def _size(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class Fusion:
    """One value of ``model.fusion.name``: ``build(fcfg, loc_net, img_dim, num_classes, extra)`` returns
    the head around ``loc_net`` (the head's own ``LocationEncoder``); ``extra`` is the parameter count
    of a ``ResidualMLP`` to add (``model.fusion.compensated``, only where ``compensable``).
    ``dynamic``: the head reads ``model.fusion.variant`` and ``cat_input``."""

    build: Callable[..., nn.Module]
    compensable: bool = False
    dynamic: bool = False


def _dynamic(combine: str) -> Fusion:
    def build(fcfg, loc_net, img_dim, num_classes, extra):
        fusion = DynamicMLP(img_dim, fcfg.d, fcfg.d, fcfg.h, fcfg.n, fcfg.variant, fcfg.cat_input, combine)
        return FusionHead(loc_net, fusion, img_dim, num_classes)

    return Fusion(build, dynamic=True)


def _attention(query: str) -> Fusion:
    return Fusion(lambda fcfg, loc_net, img_dim, num_classes, extra: FusionHead(
        loc_net, AttentionFusion(img_dim, fcfg.d, fcfg.d, query), img_dim, num_classes))


def _late(mode: str) -> Fusion:
    return Fusion(lambda fcfg, loc_net, img_dim, num_classes, extra: LateFusionHead(
        loc_net, img_dim, num_classes, mode, extra), compensable=True)


# A fusion variant is one entry here; "none" (the image-only model) is not a fusion head.
FUSIONS: dict[str, Fusion] = {
    "concat": Fusion(lambda fcfg, loc_net, img_dim, num_classes, extra: ConcatHead(
        loc_net, img_dim, num_classes, extra), compensable=True),
    "add": _late("add"),  # logits added
    "mul": _late("mul"),  # probabilities multiplied (EnsembleNet)
    "dynamic_mlp": _dynamic("matmul"),
    # Table S5: Dynamic MLP's structure with the projection replaced by concatenation / addition / product
    "same_concat": _dynamic("concat"),
    "same_add": _dynamic("add"),
    "same_mul": _dynamic("mul"),
    # attention fusion, the query from the image, the metadata, or both
    "attn_img_q": _attention("image"),
    "attn_meta_q": _attention("meta"),
    "attn_cat": _attention("cat"),
}
FUSION_NAMES = ("none", *FUSIONS)


class FusionConfig(Section):
    """How geo-temporal metadata joins the image feature (Dynamic MLP paper and its baselines)."""

    name: Literal[FUSION_NAMES] = "none"  # type: ignore[valid-type]  # none = image-only
    compensated: bool = False  # concat/add/mul with extra MLP layers matching Dynamic MLP's size
    variant: Literal["a", "b", "c"] = "c"  # Dynamic MLP variant
    d: int = Field(256, ge=1)  # Dynamic MLP reduced width (and the location encoder's output)
    h: int = Field(64, ge=1)  # Dynamic MLP hidden width of the recursive blocks
    n: int = Field(2, ge=1)  # Dynamic MLP recursions
    cat_input: Literal["both", "image", "weight"] = "both"  # variant C: branches fed cat(x, z_e) (Table 5)
    loc_width: int = Field(256, ge=1)  # location encoder width
    loc_res_layers: int = Field(4, ge=0)  # location encoder residual layers
    loc_dropout: float = Field(0.5, ge=0, lt=1)


def _head(name: str, fcfg: FusionConfig, img_dim: int, meta_in: int, num_classes: int,
          extra: int = 0) -> nn.Module:
    # the location encoder first: the order the parameters are drawn in
    loc_net = LocationEncoder(meta_in, fcfg.loc_width, fcfg.d, fcfg.loc_res_layers, fcfg.loc_dropout)
    return FUSIONS[name].build(fcfg, loc_net, img_dim, num_classes, extra)


def build_fusion_head(fcfg: FusionConfig, img_dim: int, meta_in: int, num_classes: int) -> nn.Module:
    """The head ``model.fusion`` (a ``FusionConfig``) describes; ``meta_in`` is 6, 4 or 2.

    ``compensated`` (concat/add/mul) adds a ``ResidualMLP`` sized so that the whole head has as many
    parameters as the Dynamic MLP head of the same ``d``/``h``/``n`` (location encoder and classifier
    included; both heads are first built on the meta device to count). ``variant``/``cat_input`` other
    than the defaults apply to ``dynamic_mlp`` and ``same_*`` only. Impossible combinations raise
    ``ConfigError``.
    """
    name = fcfg.name
    if name == "none":
        raise ConfigError("model.fusion.name=none is the image-only model: it has no fusion head")
    if name not in FUSIONS:
        raise ConfigError(f"model.fusion.name={name} is not a known fusion (one of {', '.join(FUSION_NAMES)})")
    if meta_in < 1:
        raise ConfigError(f"model.fusion.name={name} reads metadata but the input has {meta_in} values: "
                          "set data.metadata (e.g. [geo, temporal])")
    if fcfg.compensated and not FUSIONS[name].compensable:
        compensable = ", ".join(n for n, f in FUSIONS.items() if f.compensable)
        raise ConfigError(f"model.fusion.compensated applies to {compensable}, not {name}")
    if not FUSIONS[name].dynamic and (fcfg.variant != "c" or fcfg.cat_input != "both"):
        dynamic = ", ".join(n for n, f in FUSIONS.items() if f.dynamic)
        raise ConfigError(f"model.fusion.variant/cat_input apply to {dynamic}, not {name} "
                          f"(got variant={fcfg.variant}, cat_input={fcfg.cat_input})")
    try:
        extra = 0
        if fcfg.compensated:
            with torch.device("meta"):
                extra = (_size(_head("dynamic_mlp", fcfg, img_dim, meta_in, num_classes))
                         - _size(_head(name, fcfg, img_dim, meta_in, num_classes)))
        return _head(name, fcfg, img_dim, meta_in, num_classes, extra)
    except ValueError as exc:
        raise ConfigError(f"model.fusion: {exc}") from None
