"""Train and eval image pipelines (torchvision transforms v2), ImageNet normalisation."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_normalised_tensor() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(size: int, min_scale: float = 0.08, hflip: bool = True,
                    resize: int | None = None) -> v2.Compose:
    """Random-resized crop + horizontal flip (Dynamic MLP, erudite, CTC); with ``resize``, a square
    resize to ``resize`` then a random ``size`` crop + flip (PMG, RMG-PMSI: 512 → 448)."""
    if resize:
        steps = [v2.Resize((resize, resize), antialias=True), v2.RandomCrop(size)]
    else:
        steps = [v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalised_tensor())


def eval_geometry(size: int, crop_pct: float = 0.875, resize: int | None = None) -> list:
    """Resize the short side to ``size / crop_pct`` (or the square ``resize``), then centre-crop ``size``."""
    first = v2.Resize((resize, resize) if resize else int(round(size / crop_pct)), antialias=True)
    return [first, v2.CenterCrop(size)]


def eval_transform(size: int, crop_pct: float = 0.875, resize: int | None = None) -> v2.Compose:
    return v2.Compose(eval_geometry(size, crop_pct, resize) + _to_normalised_tensor())
