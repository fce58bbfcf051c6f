"""Train and eval image pipelines (torchvision transforms v2), ImageNet normalisation."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_normalised_tensor() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(size: int, min_scale: float = 0.08, hflip: bool = True) -> v2.Compose:
    """Random-resized crop + horizontal flip: the recipe of all four papers."""
    steps = [v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalised_tensor())


def eval_transform(size: int, crop_pct: float = 0.875) -> v2.Compose:
    """Resize the short side to ``size / crop_pct`` then centre-crop ``size``."""
    return v2.Compose([v2.Resize(int(round(size / crop_pct)), antialias=True), v2.CenterCrop(size)]
                      + _to_normalised_tensor())
