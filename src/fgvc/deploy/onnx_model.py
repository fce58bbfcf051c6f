"""An exported ONNX file (FP32 or INT8) as a model fgvc can evaluate and predict with.

``OnnxModel(path)`` runs the file in ONNX Runtime (CPU) and reads everything else — class names,
preprocessing, the metadata the model reads — from the deployment information ``fgvc export`` wrote
into it. It is called like an fgvc model, ``model(images [B,3,S,S], meta [B,D] | None) -> logits``,
with torch tensors in and out, so fgvc's evaluation loop scores exactly the file that ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fgvc.data.transforms import eval_transform
from fgvc.deploy.export import read_export_info
from fgvc.deploy.source import is_onnx  # noqa: F401  (re-exported)
from fgvc.errors import FgvcError


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session; ``threads``: intra-op threads (default: the runtime's, all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, NoSuchFile, Fail...)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FgvcError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {first})") from None


def export_info(path: str | Path) -> dict:
    """The deployment information ``fgvc export`` wrote into the file, checked to be there."""
    path = Path(path)
    if not path.is_file():
        raise FgvcError(f"ONNX file not found: {path}")
    try:
        info = read_export_info(path)
    except Exception as exc:  # onnx raises DecodeError and others on a damaged file
        raise FgvcError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    if "classes" not in info or "preprocessing" not in info:
        raise FgvcError(f"{path}: no fgvc deployment information in the file (classes, preprocessing); "
                        "export it with `fgvc export`")
    return info


def transform_from_info(preprocessing: dict, size: int | None = None):
    """fgvc's eval transform as the export describes it (square resize or short-side resize, centre crop)."""
    crop = size or preprocessing["centre_crop"]
    norm = {"mean": preprocessing["mean"], "std": preprocessing["std"]}
    if "resize_square" in preprocessing:
        return eval_transform(crop, resize=preprocessing["resize_square"], **norm)
    return eval_transform(crop, crop_pct=crop / preprocessing["resize_short_side"], **norm)


class OnnxModel(nn.Module):
    """An exported file behind the fgvc model call; holds no parameters (the weights are in the file)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.info = export_info(self.path)
        self.session = onnx_session(self.path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.classes = list(self.info["classes"])
        self.num_parameters = self.info.get("model", {}).get("parameters")  # of the exported model
        self.metadata = list(self.info["inputs"].get("meta", {}).get("use", []))
        self.meta_dim = self.info["inputs"]["meta"]["shape"][1] if "meta" in self.input_names else 0
        self.image_size = int(self.info["preprocessing"]["centre_crop"])
        self.transform = transform_from_info(self.info["preprocessing"])
        fixed = self.info["inputs"]["image"]["shape"][0]
        self.batch = fixed if isinstance(fixed, int) else None  # an export with a fixed batch of 1

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        feed = {"image": image.detach().float().cpu().numpy()}
        if "meta" in self.input_names:
            feed["meta"] = (np.zeros((len(image), self.meta_dim), np.float32) if meta is None or meta.shape[-1] == 0
                            else meta.detach().float().cpu().numpy())
        if self.batch is not None and len(image) != self.batch:  # run the fixed-batch file one image at a time
            rows = [self.session.run(["logits"], {k: v[i:i + 1] for k, v in feed.items()})[0]
                    for i in range(len(image))]
            logits = np.concatenate(rows) if rows else np.zeros((0, len(self.classes)), np.float32)
        else:
            logits = self.session.run(["logits"], feed)[0]
        return torch.from_numpy(logits).to(image.device)


class FileLogits:
    """The prediction rule of an exported file: its one output, the primary rule of the model it came from
    (``concat`` for PMG / RMG-PMSI models, whose ``mix`` rule needs the per-stage outputs the file drops)."""

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(batch["image"], batch.get("meta"))
