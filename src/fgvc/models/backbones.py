"""timm backbones: a pooled feature vector, or the multi-stage feature maps, with local weights.

``pretrained`` says where weights come from and the log says which one happened:
``None`` — random init; ``"hub"`` — timm's own pretrained weights (needs the Hugging Face hub or a
populated cache); ``"synthetic"`` — the weights shipped in ``fgvc/models/weights/``, trained offline by
``fgvc pretrain`` on the synthetic upstream set (only for the backbones listed there); any other string —
a local checkpoint file (a timm/torchvision state dict, possibly wrapped in ``state_dict``/``model`` and
prefixed ``module.``). Classifier weights in the file are ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from fgvc.checkpoint import load_checkpoint
from fgvc.errors import FgvcError

log = logging.getLogger(__name__)

SHIPPED_WEIGHTS = Path(__file__).with_name("weights")  # <backbone>-synthetic.safetensors, from fgvc pretrain


def shipped_weights(name: str) -> Path:
    """The shipped synthetic-upstream weights of backbone ``name`` (``model.pretrained=synthetic``)."""
    path = SHIPPED_WEIGHTS / f"{name}-synthetic.safetensors"
    if not path.is_file():
        have = sorted(p.name.removesuffix("-synthetic.safetensors")
                      for p in SHIPPED_WEIGHTS.glob("*-synthetic.safetensors"))
        raise FgvcError(f"model.pretrained=synthetic: no shipped weights for '{name}' (shipped for: "
                        f"{', '.join(have) or 'none'}); `fgvc pretrain --backbone {name}` trains them")
    return path


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FgvcError(f"pretrained weights file not found: {path} (model.pretrained=null for random init)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:  # tensors and plain values only; an fgvc checkpoint's checksum is verified
        state = load_checkpoint(path)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    # DataParallel prefixes, and fgvc's own checkpoints (an image-only run's backbone, e.g. for GeoNet)
    return {k.removeprefix("module.").removeprefix("backbone.body."): v for k, v in state.items()}


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load matching tensors from a local file; report what did not match instead of failing silently."""
    state = _state_dict_from_file(Path(path))
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise FgvcError(f"{path}: no tensor matches the backbone's keys/shapes (wrong architecture?)")
    model.load_state_dict(usable, strict=False)
    log.info("backbone weights: loaded %d/%d tensors from %s%s", len(usable), len(own), path,
             f" ({len(missing)} left at random init, e.g. {missing[:3]})" if missing else "")


def create_timm(name: str, pretrained: str | None, announce: bool = True, **kwargs) -> nn.Module:
    """``timm.create_model`` with the weight-source rule above (``announce``: log which source)."""
    if not timm.is_model(name):
        raise FgvcError(f"unknown timm model '{name}' (see timm.list_models())")
    if pretrained == "hub":
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # network or missing-weights errors come in many types
            raise FgvcError(f"could not fetch hub weights for '{name}' ({type(exc).__name__}); "
                            "download them elsewhere and set model.pretrained=/path/to/file") from None
        log.info("backbone weights: timm hub weights for %s", name)
        return model
    model = timm.create_model(name, pretrained=False, **kwargs)
    if pretrained == "synthetic":
        load_backbone_weights(model, shipped_weights(name))
    elif pretrained:
        load_backbone_weights(model, pretrained)
    elif announce:
        log.info("backbone weights: random init for %s (set model.pretrained to a file or 'hub')", name)
    return model


class Backbone(nn.Module):
    """A timm model without its classifier: ``forward`` gives the pooled feature ``[B, num_features]``.

    ``stages(x)`` gives the multi-stage feature maps of a ``features_only`` twin for methods that
    read several stages (PMSI, erudite); it is created on first use with the same weights.
    """

    def __init__(self, name: str, pretrained: str | None = None, drop_path_rate: float = 0.0,
                 announce: bool = True):
        super().__init__()
        self.name = name
        self.body = create_timm(name, pretrained, announce, num_classes=0, drop_path_rate=drop_path_rate)
        # width of the pooled vector: models with a pre-logits head (MobileNetV3, ...) widen it
        self.num_features: int = getattr(self.body, "head_hidden_size", None) or self.body.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map before pooling, ``[B, C, h, w]``."""
        return self.body.forward_features(x)


def create_stage_extractor(name: str, pretrained: str | None = None,
                           out_indices: tuple[int, ...] | None = None) -> nn.Module:
    """A timm ``features_only`` model returning the feature maps of the chosen stages.

    ``model.feature_info.channels()`` lists their channel counts, ``.reduction()`` their strides.
    """
    kwargs = {"features_only": True}
    if out_indices is not None:
        kwargs["out_indices"] = out_indices
    return create_timm(name, pretrained, **kwargs)
