"""``fgvc export --format onnx --quantize int8|dynamic``: an 8-bit ONNX model, and what 8 bits cost.

``int8`` (static): ONNX Runtime's post-training quantization in the QDQ format — QuantizeLinear /
DequantizeLinear pairs around every quantisable operator, which ONNX Runtime's CPU kernels (and the
mobile runtimes that read QDQ) fuse into integer kernels. Weights are int8, symmetric, one scale per
output channel; activations uint8 with ranges calibrated (MinMax) on N training images, drawn with a
seed and read through the model's own evaluation transform — never test images, and not the
validation images either, which measure the result. ``dynamic``: int8 weights, activation ranges
computed per batch at run time — no images needed, for when no training data is at hand (and slower
on convolutions: the runtime quantises every activation as it goes).

Beside the FP32 export's own parity check, the file says what quantisation did (``quantization`` in its
metadata and sidecar): the settings, which images calibrated it, the size of both models (graph and
weights), and on the validation split the top-1 of the FP32 file and of the 8-bit file and how often
their top-1 agree. ``fgvc evaluate`` then scores the 8-bit file on test like any model.

Why not ``torch.ao.quantization``: it is slated for removal upstream, and quantising the exported graph
means the measured file is the file that ships. ``reduce_range`` (7-bit weights) is on by default:
x86 CPUs without VNNI multiply uint8 x int8 pairs into saturating int16 sums, which 7-bit weights cannot
overflow; on VNNI and ARM it costs a little precision and can be turned off.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from fgvc.config import apply_override, build_config
from fgvc.data.splits import prepare_splits
from fgvc.deploy.export import data_at_size, export_onnx, read_export_info, write_export_info
from fgvc.deploy.onnx_model import FileLogits, OnnxModel
from fgvc.deploy.source import read_image_model
from fgvc.engine.evaluate import predict_loader
from fgvc.engine.inference import eval_loader
from fgvc.errors import FgvcError

log = logging.getLogger(__name__)

MODES = ("int8", "dynamic")
CALIBRATION_BATCH = 8


def data_config(ckpt_config: dict, overrides: Sequence[str] = ()):
    """The checkpoint's own config with ``key=value`` overrides (e.g. ``data.root=`` where the data now is)."""
    tree = copy.deepcopy(ckpt_config)
    for override in overrides:
        apply_override(tree, override)
    return build_config(tree)


def calibration_samples(train: list, count: int, seed: int) -> list:
    """``count`` training samples drawn without replacement with ``seed``, in split order."""
    if count < 1:
        raise FgvcError(f"--calibration {count}: need at least 1 training image")
    if not train:
        raise FgvcError("the training split is empty: static INT8 calibration needs training images "
                        "(use --quantize dynamic without data)")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(train), size=min(count, len(train)), replace=False))
    return [train[i] for i in chosen]


class CalibrationReader:
    """ONNX Runtime's calibration data reader over fgvc's evaluation pipeline: ``{"image", ["meta"]}``
    batches of the chosen samples, decoded and transformed as the model sees them at test time."""

    def __init__(self, data_cfg, samples: list, input_names: list[str]):
        loader_cfg = data_cfg.model_copy(update={"eval_batch_size": CALIBRATION_BATCH})
        self.loader = eval_loader(loader_cfg, samples)
        self.input_names = input_names
        self.batches: Iterator[dict] | None = None

    def get_next(self) -> dict | None:
        if self.batches is None:
            self.batches = iter(self.loader)
        for batch in self.batches:
            if "image" in batch:  # a batch of only unreadable images (data.bad_images=skip) has none
                return {name: batch[name].numpy().astype(np.float32) for name in self.input_names}
        return None

    def rewind(self) -> None:
        self.batches = None


def quantize_onnx(fp32_path: Path, out_path: Path, mode: str, reader: CalibrationReader | None = None,
                  reduce_range: bool = True) -> dict:
    """Quantise an exported FP32 file into ``out_path``; returns the settings used.

    The graph first goes through ONNX Runtime's pre-processing (shape inference and graph
    optimisation, e.g. folding BatchNorm), as its quantisation guide asks.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    with tempfile.TemporaryDirectory(prefix="fgvc-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if mode == "int8":
            if reader is None:
                raise ValueError("static quantisation needs a calibration reader")
            # No CalibMaxIntermediateOutputs: ONNX Runtime 1.32 drops the batches collected when that limit is
            # reached without computing their ranges (and fails at a multiple of it). MinMax keeps one
            # reduced min and max per tensor and batch, so memory stays small without the limit.
            quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
            return {"mode": "int8 static", "format": "QDQ", "weights": "int8, symmetric, per channel",
                    "activations": "uint8, calibrated (MinMax)", "reduce_range": reduce_range}
        quantize_dynamic(str(prepared), str(out_path), per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QUInt8)
        return {"mode": "dynamic", "format": "QOperator (ConvInteger / MatMulInteger)",
                "weights": "uint8, per channel", "activations": "uint8, range computed per batch at run time",
                "reduce_range": reduce_range}


def file_logits(model: OnnxModel, loader, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The file's logits and the labels over a loader, through fgvc's evaluation loop (as `fgvc evaluate`)."""
    return predict_loader(model, FileLogits(), loader, torch.device("cpu"), desc=desc)


def compare_on_split(fp32: OnnxModel, int8: OnnxModel, loader, split: str) -> dict:
    """Top-1 of both files on ``split`` and how often their top-1 classes agree (all in %)."""
    ref, labels = file_logits(fp32, loader, f"{split} FP32")
    got, labels8 = file_logits(int8, loader, f"{split} INT8")
    if len(labels) == 0:
        raise FgvcError(f"the {split} split is empty: nothing to measure the quantised model on")
    if not torch.equal(labels, labels8):
        raise RuntimeError("the two passes over the loader saw different samples")
    top1 = lambda logits: 100.0 * (logits.argmax(1) == labels).float().mean().item()  # noqa: E731
    return {"split": split, "images": len(labels), "fp32_top1": top1(ref), "int8_top1": top1(got),
            "top1_agreement": 100.0 * (ref.argmax(1) == got.argmax(1)).float().mean().item(),
            "max_abs_logit_diff": float((ref - got).abs().max())}


def export_quantized(checkpoint: str | Path, out_path: str | Path, mode: str = "int8", calibration: int = 256,
                     image_size: int | None = None, overrides: Sequence[str] = (), seed: int = 0,
                     reduce_range: bool = True, validate: bool = True, keep_fp32: str | Path | None = None,
                     opset: int = 17) -> Path:
    """Export ``checkpoint`` to FP32 ONNX (parity-checked), quantise it into ``out_path`` and measure it.

    ``overrides``: ``key=value`` changes to the checkpoint's config, e.g. ``data.root=`` when the data
    moved since training. The validation split (``data.val_fraction`` hold-out or the official one) is
    resolved exactly as in training; the calibration images are drawn from what remains of train.
    ``validate=False`` skips the validation measurement; ``keep_fp32``: also keep the FP32 file there.
    """
    if mode not in MODES:
        raise FgvcError(f"--quantize {mode}: expected one of {', '.join(MODES)}")
    out = Path(out_path)
    cfg = data_config(read_image_model(checkpoint)["config"], overrides)
    with tempfile.TemporaryDirectory(prefix="fgvc-export-") as tmp:
        fp32_path = export_onnx(checkpoint, Path(keep_fp32 or Path(tmp) / "fp32.onnx"), image_size=image_size,
                                opset=opset)
        info = read_export_info(fp32_path)
        data_cfg = data_at_size(cfg.data, info["preprocessing"]["centre_crop"])
        needs_data = mode == "int8" or validate  # dynamic without validation reads no images
        splits = _splits_or_none(data_cfg, required=mode == "int8") if needs_data else None
        reader, calibrated = None, None
        if mode == "int8":
            samples = calibration_samples(splits.train, calibration, seed)
            reader = CalibrationReader(data_cfg, samples, list(info["inputs"]))
            calibrated = {"split": "train", "images": len(samples), "seed": seed, "requested": calibration,
                          "paths": [_relative(s.path, data_cfg.root) for s in samples]}
            log.info("calibrating on %d training images (seed %d)", len(samples), seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = _quantize_or_error(fp32_path, out, mode, reader, reduce_range)
        quantization = {**settings, "calibration": calibrated, "runtime": _ort_version(),
                        "bytes": {"fp32": model_bytes(fp32_path), "int8": model_bytes(out)}, "validation": None}
        write_export_info(out, {**info, "quantization": quantization})
        int8_model = OnnxModel(out)  # loads in ONNX Runtime, or the export fails here
        if validate and splits is not None and splits.val:
            loader = eval_loader(data_cfg, splits.val)
            quantization["validation"] = compare_on_split(OnnxModel(fp32_path), int8_model, loader, "val")
            write_export_info(out, {**info, "quantization": quantization})
        elif validate:
            log.warning("no validation images: the quantised file is written without an accuracy check")
    return out


def _quantize_or_error(fp32_path: Path, out: Path, mode: str, reader, reduce_range: bool) -> dict:
    try:
        return quantize_onnx(fp32_path, out, mode, reader, reduce_range)
    except FgvcError:  # e.g. an unreadable calibration image, named by the data pipeline
        out.unlink(missing_ok=True)
        raise
    except Exception as exc:  # the quantiser's errors come in many types; its first line says what failed
        out.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FgvcError(f"ONNX Runtime quantisation failed ({type(exc).__name__}: {first})") from exc


def model_bytes(path: Path) -> int:
    """Size of a file's graph and weights, without the deployment information written into it."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    return model.ByteSize()


def _splits_or_none(data_cfg, required: bool):
    """The checkpoint's splits; for dynamic quantisation, missing data is a warning instead of an error."""
    try:
        return prepare_splits(data_cfg)
    except FgvcError as exc:
        if required:
            raise FgvcError(f"{exc} — static INT8 calibrates on the model's training images: point "
                            "data.root at them (--set data.root=PATH), or use --quantize dynamic") from None
        log.warning("dataset not readable (%s): the dynamic INT8 file is written without a validation check",
                    exc)
        return None


def _relative(path: str, root: str) -> str:
    """A path as written into the file: relative to the dataset root where it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).expanduser().resolve()))
    except (ValueError, OSError):
        return str(path)


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__
