"""Import the authors' released Dynamic MLP checkpoints (ResNet-50 + Dynamic MLP-C, iNat21-mini).

Their model (``models/resnet_dynamic_mlp.py`` of the official code) is a torchvision ResNet whose
``fc`` reads the fused 2048-d feature, plus ``loc_net`` (the location encoder) and ``loc_att`` (the
``FusionModule``); their training script saves ``{'epoch', 'model': DataParallel state dict, 'optimizer'}``.
fgvc's ``FusionClassifier`` uses the same module names under ``head.`` and timm's ResNet (whose keys equal
torchvision's) under ``backbone.body.``, so the conversion is a prefix mapping:

    module.conv1/bn1/layer1..4.*  ->  backbone.body.conv1/bn1/layer1..4.*
    module.loc_net.*              ->  head.loc_net.*
    module.loc_att.*              ->  head.loc_att.*
    module.fc.*                   ->  head.fc.*
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fgvc.checkpoint import save_atomic
from fgvc.config import build_config
from fgvc.errors import FgvcError
from fgvc.models import build_model
from fgvc.models.fusion import FusionConfig

BACKBONE_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
HEAD_PREFIXES = ("loc_net.", "loc_att.", "fc.")
REQUIRED = ("conv1.weight", "fc.weight", "loc_net.feats.0.weight", "loc_net.class_emb.weight",
            "loc_att.conv1.weight", "loc_att.conv3.weight")
METADATA = {6: ["geo", "temporal"], 4: ["geo"], 2: ["temporal"]}


def _names(keys: list[str], limit: int = 4) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def unwrap_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """The tensors of a saved model: unwraps ``{'state_dict'|'model': ...}`` and drops ``module.``."""
    if not isinstance(state, dict):
        raise FgvcError(f"not a state dict: a {type(state).__name__}")
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise FgvcError(f"not a Dynamic MLP state dict: non-tensor entries {_names(bad)}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_dynamic_mlp_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """The authors' state dict (possibly wrapped and ``module.``-prefixed) as a ``FusionClassifier``'s."""
    state = unwrap_state_dict(state)
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise FgvcError(f"not a ResNet + Dynamic MLP checkpoint: missing {_names(missing)}")
    out, leftover = {}, []
    for key, value in state.items():
        if key.startswith(HEAD_PREFIXES):
            out[f"head.{key}"] = value
        elif key.startswith(BACKBONE_PREFIXES):
            out[f"backbone.body.{key}"] = value
        else:
            leftover.append(key)
    if leftover:
        raise FgvcError(f"unexpected keys in the Dynamic MLP checkpoint: {_names(leftover)}")
    return out


def infer_dynamic_mlp_settings(state: dict) -> dict:
    """Model settings read from tensor shapes: ``img_dim, d, h, n, variant, cat_input, num_classes,
    meta_in, metadata, loc_width, loc_res_layers`` (``h`` is the config default when ``n == 1``)."""
    s = unwrap_state_dict(state)
    missing = [k for k in REQUIRED if k not in s]
    if missing:
        raise FgvcError(f"not a ResNet + Dynamic MLP checkpoint: missing {_names(missing)}")
    d, img_dim = s["loc_att.conv1.weight"].shape
    meta_dim = s["loc_net.class_emb.weight"].shape[0]
    loc_width, meta_in = s["loc_net.feats.0.weight"].shape
    blocks = sorted({int(m.group(1)) for k in s if (m := re.match(r"loc_att\.conv2\.(\d+)\.", k))})
    res = {int(m.group(1)) for k in s if (m := re.match(r"loc_net\.feats\.(\d+)\.w1\.", k))}
    if not blocks or blocks != list(range(len(blocks))):
        raise FgvcError(f"Dynamic MLP checkpoint: recursive blocks loc_att.conv2.* numbered {blocks}")
    first = "loc_att.conv2.0.dynamic_conv."
    if f"{first}get_weight.weight" in s:
        variant, cat_input = "a", "both"
        q = s[f"{first}get_weight.weight"].shape[0] // d
    elif f"{first}conv11.conv.0.weight" in s:
        cat_image = s[f"{first}conv11.conv.0.weight"].shape[1] == d + meta_dim
        cat_weight = s[f"{first}conv21.conv.0.weight"].shape[1] == d + meta_dim
        variant = "c" if cat_image or cat_weight else "b"
        cat_input = {(True, True): "both", (True, False): "image", (False, True): "weight"}.get(
            (cat_image, cat_weight), "both")
        q = s[f"{first}conv3.conv.0.weight"].shape[0]
    else:
        raise FgvcError(f"Dynamic MLP checkpoint: unknown block layout under {first}")
    if meta_dim != d:
        raise FgvcError(f"Dynamic MLP checkpoint: location embedding width {meta_dim} differs from d={d}")
    if meta_in not in METADATA:
        raise FgvcError(f"Dynamic MLP checkpoint: {meta_in} metadata inputs (expected 6, 4 or 2)")
    return {"img_dim": int(img_dim), "d": int(d), "h": int(q) if len(blocks) > 1 else FusionConfig().h,
            "n": len(blocks), "variant": variant, "cat_input": cat_input,
            "num_classes": int(s["fc.weight"].shape[0]), "meta_in": int(meta_in),
            "metadata": METADATA[int(meta_in)], "loc_width": int(loc_width), "loc_res_layers": len(res)}


def import_dynamic_mlp_checkpoint(path: str | Path, out_path: str | Path, backbone: str = "resnet50",
                                  classes: list[str] | None = None) -> dict:
    """Convert a released checkpoint file into an fgvc checkpoint at ``out_path``; returns it.

    The written config describes the model (``model.backbone``, ``model.fusion``, ``data.metadata``) for
    iNat2021 with a placeholder ``data.root`` to override; ``classes`` names the outputs (the iNat 2021
    class list, so that ``fgvc evaluate`` on the real data accepts it), else the indices as strings.
    The converted weights are loaded strictly into the fgvc model before anything is written.
    """
    path = Path(path)
    if not path.is_file():
        raise FgvcError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — torch raises several types for a bad zip/pickle
        raise FgvcError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    try:
        settings = infer_dynamic_mlp_settings(raw)
        state = convert_dynamic_mlp_state_dict(raw)
    except FgvcError as exc:
        raise FgvcError(f"{path}: {exc}") from None
    fusion = {k: settings[k] for k in ("variant", "d", "h", "n", "cat_input", "loc_width", "loc_res_layers")}
    cfg = build_config({
        "name": path.stem,
        "data": {"format": "inat2021", "root": "data/inat2021", "metadata": settings["metadata"]},
        "model": {"backbone": backbone, "pretrained": None, "fusion": {"name": "dynamic_mlp", **fusion}},
    })
    model = build_model(cfg, settings["num_classes"], load_pretrained=False)  # what evaluate/predict build
    if model.backbone.num_features != settings["img_dim"]:
        raise FgvcError(f"{path}: the fusion reads {settings['img_dim']}-d features but {backbone} gives "
                        f"{model.backbone.num_features}; pass the checkpoint's backbone")
    own = model.state_dict()
    # BatchNorm's num_batches_tracked is absent from some older torchvision state dicts; it is unused
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {_names(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise FgvcError(f"{path} does not fit fgvc's {backbone} + Dynamic MLP ({'; '.join(parts)})")
    if classes is not None and len(classes) != settings["num_classes"]:
        raise FgvcError(f"{path} predicts {settings['num_classes']} classes, the class list has {len(classes)}")
    model.load_state_dict(state, strict=False)
    ckpt = {"model": model.state_dict(), "config": cfg.model_dump(mode="json"),
            "classes": list(classes) if classes else [str(i) for i in range(settings["num_classes"])],
            "dataset": "inat2021",
            "source": str(path)}
    save_atomic(ckpt, out_path)
    return ckpt
