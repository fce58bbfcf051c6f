"""``fgvc export``: an fgvc checkpoint as an ONNX file a deployment can run without fgvc or PyTorch.

The file has the input ``image`` (float32 [B, 3, S, S], normalised as ``info["preprocessing"]`` says),
for metadata-fusion models a second input ``meta`` (float32 [B, D], ``encode_metadata`` of the
checkpoint's ``data.metadata``; all zeros = missing), and the output ``logits`` [B, classes]
(unnormalised; softmax gives probabilities). Everything a deployment needs besides the weights — class
names, preprocessing, inputs, the parity measured at export — is written twice: into the ONNX
``metadata_props`` (one key per entry, each value JSON) so it travels with the file, and into the
sidecar ``<out>.json`` so it can be read without an ONNX library (``read_export_info``).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. With torch 2.14.1 both
exporters give the same logits on timm CNNs and on the fusion heads, but the ``torch.export``-based one
(``dynamo=True``) cannot write opset 17 (it writes 18, tries to convert down and fails on
ResNet/MobileNet, keeping 18), takes 5-15x longer (26 s vs 2-7 s for MobileNetV2 on two cores) and
prints pages of conversion tracebacks. The TorchScript exporter is deprecated upstream, so
``dynamo=True`` stays available for when it goes (use ``opset >= 18`` with it).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fgvc.data.metadata import metadata_dim
from fgvc.deploy.source import read_image_model
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError
from fgvc.version import __version__

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
ATOL = 1e-4  # parity: max |ONNX - PyTorch| logit <= ATOL * max(1, max |PyTorch logit|)
EXPORT_BATCH = 2  # traced batch size; parity is checked at PARITY_BATCH so a baked-in batch size shows
PARITY_BATCH = 3


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``: next to the model, named after it."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".json")


def read_export_info(onnx_path: str | Path) -> dict:
    """The deployment information of an exported file, from its ONNX ``metadata_props``."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props}


def load_for_export(checkpoint_path: str | Path) -> tuple[dict, object, nn.Module]:
    """``(checkpoint, config, model in eval mode)`` of a checkpoint, hub folder or ``hf://`` id — the same
    rebuild as ``fgvc predict``."""
    ckpt = read_image_model(checkpoint_path)
    cfg, model = model_from_checkpoint(ckpt, len(ckpt.get("classes") or []))
    return ckpt, cfg, model.eval()


def example_inputs(cfg, batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's signature: ``(image,)`` or ``(image, meta)`` for fusion models.

    ``meta`` is uniform in [-1, 1], the range of the sin/cos encoding.
    """
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=g)
    if cfg.model.fusion.name == "none":
        return (image,)
    return image, torch.rand(batch, metadata_dim(cfg.data.metadata), generator=g) * 2 - 1


def input_names(cfg) -> list[str]:
    return ["image"] if cfg.model.fusion.name == "none" else ["image", "meta"]


def _logits(model: nn.Module, inputs: tuple[torch.Tensor, ...], num_classes: int) -> torch.Tensor:
    """The eval-mode forward, checked to be one ``[B, classes]`` tensor (what the export can carry)."""
    try:
        with torch.no_grad():
            out = model(*inputs)
    except RuntimeError as exc:  # e.g. an image too small for the backbone's downsampling
        shapes = " and ".join(f"{list(x.shape)}" for x in inputs)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FgvcError(f"the model's forward failed on inputs {shapes}: {first}") from exc
    expected = (inputs[0].shape[0], num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FgvcError(f"the model's eval-mode forward returned {got}, expected logits of shape {expected}: "
                        "only models whose eval forward gives one logits tensor can be exported")
    return out


def data_at_size(data_cfg, size: int):
    """The data config evaluated at ``size`` px: a square ``resize`` scales with it (512 -> 448 becomes
    256 -> 224), a short-side resize keeps its ``crop_pct``."""
    if size == data_cfg.image_size:
        return data_cfg
    resize = round(data_cfg.resize * size / data_cfg.image_size) if data_cfg.resize else None
    return data_cfg.model_copy(update={"image_size": size, "resize": resize})


def preprocessing_info(data_cfg) -> dict:
    """fgvc's eval transform of ``data_cfg`` in words and numbers, for code that does not run fgvc."""
    size = data_cfg.image_size
    return {
        "colour": "RGB",
        **({"resize_square": data_cfg.resize} if data_cfg.resize
           else {"resize_short_side": round(size / data_cfg.crop_pct)}),
        "resize": "bilinear, antialiased", "centre_crop": size, "scale": "pixel / 255",
        "mean": list(data_cfg.mean), "std": list(data_cfg.std), "layout": "NCHW",
        "note": "image = (pixel / 255 - mean) / std per channel, as fgvc's eval_transform"}


def deployment_info(ckpt: dict, cfg, checkpoint_path: str | Path, size: int, opset: int | None = None,
                    dynamic_batch: bool = True, exporter: str | None = None) -> dict:
    """What a deployment needs to feed the model and read its output (the ONNX metadata_props): classes,
    preprocessing at ``size``, inputs, outputs, the model and the resolved config it was trained with."""
    classes = [str(c) for c in ckpt.get("classes") or []]
    batch = "batch" if dynamic_batch else 1
    inputs = {"image": {"shape": [batch, 3, size, size], "dtype": "float32"}}
    if cfg.model.fusion.name != "none":
        use = list(cfg.data.metadata)
        inputs["meta"] = {
            "shape": [batch, metadata_dim(use)], "dtype": "float32", "use": use,
            "encoding": "lat/90, lon/180 (geo) then date as a fraction of its year mapped to [-1, 1] "
                        "(temporal), in that order; the vector is [sin(pi*x)...] + [cos(pi*x)...]; all zeros "
                        "when missing (fgvc.data.metadata.encode_metadata)"}
    info = {
        "classes": classes,
        **({"taxonomy": ckpt["taxonomy"]} if ckpt.get("taxonomy") else {}),  # genus roll-up at prediction
        "preprocessing": preprocessing_info(data_at_size(cfg.data, size)),
        "inputs": inputs,
        "outputs": {"logits": {
            "shape": [batch, len(classes)], "dtype": "float32",
            "note": "unnormalised scores, index i = classes[i]; softmax gives probabilities"}},
        "model": {"backbone": cfg.model.backbone, "head": cfg.model.head, "fusion": cfg.model.fusion.name,
                  "dataset": ckpt.get("dataset"), "checkpoint": str(checkpoint_path)},
        "config": cfg.model_dump(mode="json"),
    }
    if exporter is not None:
        info["export"] = {"exporter": exporter, "opset": opset, "torch": torch.__version__, "fgvc": __version__}
    return info


def _torch_export(model: nn.Module, inputs: tuple, path: Path, names: list[str], opset: int,
                  dynamic_batch: bool, dynamo: bool) -> None:
    kwargs: dict = {"input_names": names, "output_names": ["logits"], "opset_version": opset,
                    "dynamo": dynamo}
    if dynamo:
        if dynamic_batch:
            batch = torch.export.Dim("batch", min=1, max=4096)
            kwargs["dynamic_shapes"] = tuple({0: batch} for _ in names)
    else:
        kwargs["do_constant_folding"] = True
        if dynamic_batch:
            kwargs["dynamic_axes"] = {name: {0: "batch"} for name in names + ["logits"]}
    with warnings.catch_warnings(), torch.no_grad():
        # the choice of the deprecated exporter is deliberate (module docstring): do not repeat it per call
        for message in (".*TorchScript-based ONNX export", "The feature will be removed"):
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        try:
            torch.onnx.export(model, inputs, str(path), **kwargs)
        except Exception as exc:  # the exporters raise many types; the first line says what failed
            first = (str(exc).strip().splitlines() or [""])[0]
            raise FgvcError(f"ONNX export failed ({type(exc).__name__}: {first})") from exc


def check_parity(onnx_path: Path, model: nn.Module, inputs: tuple[torch.Tensor, ...],
                 names: list[str], num_classes: int) -> dict:
    """ONNX Runtime (CPU) vs PyTorch on ``inputs``: ``{"max_abs_diff", "tolerance", "top1_agree", "batch"}``.

    Passes when max |diff| <= ``ATOL * max(1, max |PyTorch logit|)`` and the top-1 classes agree on every
    sample (a disagreement is tolerated only where PyTorch's own top-2 margin is within the tolerance,
    i.e. a tie). Raises ``FgvcError`` otherwise.
    """
    import onnxruntime as ort

    reference = _logits(model, inputs, num_classes).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {n: x.numpy() for n, x in zip(names, inputs)})[0]
    if got.shape != reference.shape:
        raise FgvcError(f"ONNX parity failed: ONNX Runtime gave logits of shape {got.shape}, PyTorch "
                        f"{reference.shape} (batch {inputs[0].shape[0]}, not the traced {EXPORT_BATCH}?)")
    diff = float(np.abs(got - reference).max())
    tolerance = ATOL * max(1.0, float(np.abs(reference).max()))
    rows = np.arange(len(reference))
    mismatch = got.argmax(1) != reference.argmax(1)
    tie = reference.max(1) - reference[rows, got.argmax(1)] <= tolerance
    agree = int((~mismatch).sum())
    if diff > tolerance or (mismatch & ~tie).any():
        raise FgvcError(f"ONNX parity failed: max |ONNX Runtime - PyTorch| logit {diff:.2e} (tolerance "
                        f"{tolerance:.1e}), top-1 agrees on {agree}/{len(reference)} samples")
    return {"max_abs_diff": diff, "tolerance": tolerance, "top1_agree": f"{agree}/{len(reference)}",
            "batch": int(inputs[0].shape[0])}


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def write_export_info(onnx_path: str | Path, info: dict, model=None) -> None:
    """Write ``info`` into the file's ``metadata_props`` (one JSON value per key, replacing what was there)
    and into its sidecar ``<file>.json``; ``model``: the file's ModelProto when already loaded."""
    import onnx

    model = onnx.load(str(onnx_path)) if model is None else model
    del model.metadata_props[:]
    for key, value in info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(onnx_path))
    sidecar_path(onnx_path).write_text(json.dumps(info, indent=2))


def export_onnx(checkpoint_path: str | Path, out_path: str | Path, image_size: int | None = None,
                opset: int = 17, dynamic_batch: bool = True, dynamo: bool = False) -> Path:
    """Export an fgvc checkpoint to ONNX, check it against PyTorch, and describe it for deployment.

    ``image_size`` defaults to the checkpoint's ``data.image_size``; ``dynamic_batch`` makes the batch
    axis free (traced at batch 2, checked at batch 3), else it is fixed at 1. Any model whose eval-mode
    forward is ``model(image)`` or, for ``model.fusion.name != "none"``, ``model(image, meta)`` and
    returns one logits tensor is exported the same way.

    Parity: ONNX Runtime (CPUExecutionProvider) and PyTorch run a fresh random batch; the file is kept
    only if max |logit difference| <= 1e-4 * max(1, max |logit|) and top-1 is identical (ties within
    that tolerance aside) — otherwise the file is removed and ``FgvcError`` says by how much it missed.
    The result is in ``read_export_info(path)["parity"]`` and the sidecar ``<out>.json``.
    """
    import onnx

    out = Path(out_path)
    ckpt, cfg, model = load_for_export(checkpoint_path)
    size = cfg.data.image_size if image_size is None else image_size
    if size < 1:
        raise FgvcError(f"--image-size {size}: must be a positive number of pixels")
    num_classes, names = len(ckpt.get("classes") or []), input_names(cfg)
    traced = example_inputs(cfg, EXPORT_BATCH if dynamic_batch else 1, size, seed=0)
    _logits(model, traced, num_classes)  # a clear error before the exporter's, if the forward does not fit
    out.parent.mkdir(parents=True, exist_ok=True)
    exporter = f"torch.onnx ({'torch.export' if dynamo else 'TorchScript'}, dynamo={dynamo})"
    _torch_export(model, traced, out, names, opset, dynamic_batch, dynamo)
    written = onnx.load(str(out))  # the opset actually written (dynamo=True may raise a lower request)
    info = deployment_info(ckpt, cfg, checkpoint_path, size, _opset(written), dynamic_batch, exporter)
    info["model"]["parameters"] = sum(p.numel() for p in model.parameters())  # reports of the file name it
    try:
        info["parity"] = check_parity(out, model, example_inputs(cfg, PARITY_BATCH if dynamic_batch else 1,
                                                                 size, seed=1), names, num_classes)
    except BaseException:
        out.unlink(missing_ok=True)
        sidecar_path(out).unlink(missing_ok=True)  # a previous export's description would now be wrong
        raise
    write_export_info(out, info, written)
    log.info("exported %s (%s, opset %d): parity max |diff| %.2e", out, exporter, info["export"]["opset"],
             info["parity"]["max_abs_diff"])
    return out
