"""A trained model as prediction sees it, whatever file it came from: ``load_inference_model(source)``.

``fgvc predict``, ``fgvc serve`` and the benchmarks use a model only through ``InferenceModel``: the
class names and their taxonomy, the config the model was trained with, the metadata it reads, its
evaluation preprocessing, and one call ``(images [B,3,S,S], meta [B,D] | None) -> logits [B,C]``.
Sources: an fgvc checkpoint (``best.pt``, ``last.pt``, ``epoch_NNN.pt`` or one written by
``fgvc import-checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fgvc.config import Config
from fgvc.data.metadata import metadata_dim
from fgvc.data.transforms import eval_transform_for
from fgvc.checkpoint import load_checkpoint
from fgvc.engine.inference import model_from_checkpoint
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
    """The model at ``source`` (an fgvc ``.pt`` checkpoint), in eval mode on ``device``."""
    ckpt = load_checkpoint(source)
    if ckpt.get("kind") == "priors_net":
        raise FgvcError(f"{source}: a PriorsNet location prior, not an image model; give the image model "
                        "as the checkpoint and this file as its prior (--prior)")
    if "config" not in ckpt or "model" not in ckpt:
        raise FgvcError(f"{source}: not an fgvc checkpoint (no config/model); convert released weights "
                        "with `fgvc import-checkpoint` first")
    classes = [str(c) for c in ckpt.get("classes") or []]
    cfg, model = model_from_checkpoint(ckpt, len(classes))
    device = torch.device(device)
    model.eval().to(device)
    data = cfg.data
    reads = tuple(data.metadata) if cfg.model.fusion.name != "none" else ()
    return InferenceModel(
        source=str(source), classes=classes, config=cfg, metadata=reads,
        preprocess=eval_transform_for(data),
        forward=model, device=device, taxonomy=dict(ckpt.get("taxonomy") or {}),
        occurrences=ckpt.get("occurrences"))
