"""A trained model as prediction sees it, whatever file it came from: ``load_inference_model(source)``.

``fgvc predict``, ``fgvc serve`` and the benchmarks use a model only through ``InferenceModel``: the
class names and their taxonomy, the config the model was trained with, the metadata it reads, its
evaluation preprocessing, and one call ``(images [B,3,S,S], meta [B,D] | None) -> logits [B,C]``.
Sources: an fgvc checkpoint (``best.pt``, ``last.pt``, ``epoch_NNN.pt`` or one written by
``fgvc import-checkpoint``), a folder written by ``fgvc export --format hub`` or its Hub id
``hf://owner/name``, and an ``.onnx`` file written by ``fgvc export`` (FP32 or 8-bit: what ships is what
predicts). ``fgvc.load(source)`` is this function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fgvc.config import Config, build_config
from fgvc.data.metadata import metadata_dim
from fgvc.data.transforms import eval_transform_for
from fgvc.deploy.export import data_at_size
from fgvc.deploy.onnx_model import FileLogits, OnnxModel
from fgvc.deploy.source import is_onnx, read_image_model, read_model_file
from fgvc.engine.inference import LoadedModel, load_for_eval, model_from_checkpoint
from fgvc.errors import FgvcError


@dataclass
class InferenceModel:
    """Everything prediction needs from a trained model.

    ``metadata``: what the model reads, ``("geo", "temporal")``, ``("geo",)``, ``("temporal",)``, or
    ``()`` for an image-only model. ``preprocess``: an RGB ``uint8 [3,H,W]`` tensor (or PIL image) to
    the normalised ``float32 [3,S,S]`` the model was evaluated on. ``taxonomy``: rank -> value per
    class (iNaturalist formats: kingdom ... genus, common_name), ``{}`` when the dataset has none.
    ``occurrences``: the training split's locations per class (``fgvc.data.occurrences``), or None.
    """

    source: str
    classes: list[str]
    config: Config
    metadata: tuple[str, ...]
    preprocess: Callable
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device = torch.device("cpu")
    taxonomy: dict[str, list[str]] = field(default_factory=dict)
    occurrences: dict[str, torch.Tensor] | None = None

    @property
    def image_size(self) -> int:
        return self.config.data.image_size

    @property
    def meta_dim(self) -> int:
        return metadata_dim(self.metadata) if self.metadata else 0

    def __call__(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, C]`` (float32, CPU). ``meta=None`` (or zeros) is "no metadata", the model's
        missing-metadata rule; an image-only model ignores ``meta``."""
        if meta is None:
            meta = images.new_zeros(len(images), self.meta_dim)
        with torch.inference_mode():
            return self.forward(images.to(self.device), meta.to(self.device)).float().cpu()


def load_inference_model(source: str | Path, device: str | torch.device = "cpu") -> InferenceModel:
    """The model at ``source`` in eval mode on ``device``: an fgvc ``.pt`` checkpoint, a hub folder, an
    ``hf://owner/name`` id, or an exported ``.onnx`` file (run by ONNX Runtime on the CPU)."""
    device = torch.device(device)
    if is_onnx(source):
        return _onnx_inference_model(source, device)
    ckpt = read_image_model(source)
    classes = [str(c) for c in ckpt.get("classes") or []]
    cfg, model = model_from_checkpoint(ckpt, len(classes))
    model.eval().to(device)
    data = cfg.data
    reads = tuple(data.metadata) if cfg.model.fusion.name != "none" else ()
    return InferenceModel(
        source=str(source), classes=classes, config=cfg, metadata=reads,
        preprocess=eval_transform_for(data),
        forward=model, device=device, taxonomy=dict(ckpt.get("taxonomy") or {}),
        occurrences=ckpt.get("occurrences"))


def _onnx_inference_model(path: str | Path, device: torch.device) -> InferenceModel:
    """An exported file: classes, taxonomy, metadata and preprocessing from the information written into
    it; the config is the training config at the file's input size."""
    if device.type != "cpu":
        raise FgvcError(f"{path}: an ONNX file runs in ONNX Runtime on the CPU here; use --device cpu, or "
                        f"the checkpoint it was exported from on {device}")
    net = OnnxModel(path)
    cfg = build_config(net.info["config"])
    cfg = cfg.model_copy(update={"data": data_at_size(cfg.data, net.image_size)})
    return InferenceModel(
        source=str(path), classes=[str(c) for c in net.classes], config=cfg, metadata=tuple(net.metadata),
        preprocess=net.transform, forward=net, device=device, taxonomy=dict(net.info.get("taxonomy") or {}))


# --- evaluation (``fgvc evaluate``) ---------------------------------------------------------------

def load_for_eval_any(cfg: Config, source: str | Path, classes: Sequence[str]) -> LoadedModel:
    """``fgvc.engine.inference.load_for_eval`` for any source: a checkpoint, a hub folder or ``hf://`` id,
    or an exported ``.onnx`` file, scored as it ships — ONNX Runtime on the CPU, its one output as the
    prediction rule, the images prepared as the file says (its size, resize, normalisation) with the
    metadata it reads."""
    if not is_onnx(source):
        return load_for_eval(cfg, source, classes, ckpt=read_model_file(source))
    if cfg.eval.tta_scales:
        raise FgvcError(f"eval.tta_scales with {source}: an ONNX file takes one input size; export one "
                        "file per size (fgvc export --image-size S) and evaluate each")
    model = OnnxModel(source)
    if list(model.classes) != list(classes):
        dataset = model.info["model"].get("dataset")
        raise FgvcError(f"{source}: exported with {len(model.classes)} classes of '{dataset}', not the "
                        f"{len(classes)} classes of this dataset")
    data = build_config(model.info["config"]).data  # the transform the model was trained and evaluated with
    data_cfg = cfg.data.model_copy(update={
        "image_size": data.image_size, "resize": data.resize, "crop_pct": data.crop_pct, "mean": data.mean,
        "std": data.std, "metadata": list(model.metadata)})
    info = {"classes": model.classes, "config": model.info["config"], "onnx": model.info}
    data_cfg = data_at_size(data_cfg, model.image_size)
    return LoadedModel(info, model, FileLogits(), data_cfg, torch.device("cpu"))


def report_stem(split: str, source: str | Path) -> str:
    """``report`` (test) or ``report_<split>``; an exported file's figures go beside the run's own,
    ``report_<split>_<file name>``, so scoring the file that ships never replaces the checkpoint's report."""
    if is_onnx(source):
        return f"report_{split}_{Path(source).stem.replace('.', '_')}"
    return "report" if split == "test" else f"report_{split}"
