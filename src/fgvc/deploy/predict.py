"""``fgvc predict``: top-k classes for image files, with location and date when the model reads them."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fgvc.checkpoint import load_checkpoint
from fgvc.data.dataset import load_image
from fgvc.data.metadata import encode_metadata, metadata_dim
from fgvc.data.records import Sample
from fgvc.data.transforms import eval_transform_for
from fgvc.errors import FgvcError
from fgvc.models import model_from_checkpoint

log = logging.getLogger(__name__)


def predict_images(checkpoint: str | Path, images: list[str], lat: float | None = None,
                   lon: float | None = None, date: str | None = None, topk: int = 5,
                   device: str = "cpu") -> list[dict]:
    """One dict per image: ``{"image", "metadata", "top": [{"class", "index", "probability"}...]}``."""
    ckpt = load_checkpoint(checkpoint)
    if "config" not in ckpt or "model" not in ckpt:
        raise FgvcError(f"{checkpoint}: not an fgvc checkpoint (no config/model); convert released "
                        "weights with `fgvc import-checkpoint` first")
    classes = list(ckpt.get("classes") or [])
    cfg, model = model_from_checkpoint(ckpt, len(classes))
    model.eval().to(device)
    use = tuple(cfg.data.metadata)
    reads_meta = cfg.model.fusion.name != "none"
    meta, note = torch.zeros(1, metadata_dim(use) if use else 0), "not used by this model"
    if reads_meta:
        given = {"lat": lat, "lon": lon, "date": date}
        needed = (["lat", "lon"] if "geo" in use else []) + (["date"] if "temporal" in use else [])
        absent = [k for k in needed if given[k] is None]
        meta = torch.from_numpy(encode_metadata(lat, lon, date, use=use, on_invalid="error"))[None]
        note = ("used" if not absent else
                f"missing --{', --'.join(absent)}: the model's missing-metadata rule applies (all-zero input)")
        if absent:
            log.warning("this model reads %s; %s", "+".join(use), note)
    transform = eval_transform_for(cfg.data)
    results = []
    with torch.no_grad():
        for path in images:
            image = transform(load_image(Sample(path=str(path), label=-1, id=Path(path).name)))[None]
            probs = model(image.to(device), meta.to(device)).float().softmax(dim=1)[0].cpu()
            top = probs.topk(min(topk, len(classes)))
            results.append({"image": str(path), "metadata": note, "top": [
                {"class": classes[i], "index": int(i), "probability": float(p)}
                for p, i in zip(top.values.tolist(), top.indices.tolist())]})
    return results
