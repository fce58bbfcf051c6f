"""Accuracy under test-time corruptions and its drop against clean accuracy (RMG-PMSI Table VII).

Two corruptions, each at several severities, applied to the evaluation image (after resize and
centre crop, on pixel values in [0, 1], before normalisation):

- ``color_jitter``: brightness, contrast and saturation factors each drawn uniformly from
  ``[1 - s, 1 + s]`` (torchvision ``ColorJitter``); ``s = 1`` is the paper's ``[0, 2]``.
- ``gaussian_noise``: additive N(0, σ²) per pixel, clipped to [0, 1].

Every image's corruption is drawn under its own seed (its index in the split), so a figure is
reproducible and two models meet the same corrupted images.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from fgvc.data.dataset import ImageDataset, collate
from fgvc.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_geometry

SEVERITIES = {"color_jitter": (0.25, 0.5, 1.0), "gaussian_noise": (0.05, 0.1, 0.2)}
SEED_BASE = 7_000_003


class GaussianNoise(torch.nn.Module):
    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image + self.std * torch.randn(image.shape)).clamp_(0, 1)


def corruption(name: str, severity: float) -> torch.nn.Module:
    if name == "color_jitter":
        return v2.ColorJitter(brightness=severity, contrast=severity, saturation=severity)
    if name == "gaussian_noise":
        return GaussianNoise(severity)
    raise ValueError(f"unknown corruption {name!r} (one of {', '.join(SEVERITIES)})")


def corrupted_transform(size: int, crop_pct: float, name: str, severity: float,
                        resize: int | None = None) -> v2.Compose:
    """The evaluation pipeline with the corruption between pixel scaling and normalisation."""
    return v2.Compose(eval_geometry(size, crop_pct, resize)
                      + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), corruption(name, severity),
                         v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def corrupted_loader(dataset: ImageDataset, transform: v2.Compose, batch_size: int, workers: int) -> DataLoader:
    """The dataset with the corrupting transform, each item drawn under seed ``SEED_BASE + index``."""
    corrupted = copy.copy(dataset)
    corrupted.transform = transform
    keys = [(i, SEED_BASE + i) for i in range(len(dataset))]
    return DataLoader(corrupted, batch_size=batch_size, sampler=keys, num_workers=workers, collate_fn=collate)


def robustness_rows(clean: dict, results: dict[tuple[str, float], dict]) -> list[dict]:
    """Table rows: clean first, then each corruption and severity with its top-1 drop."""
    rows = [{"corruption": "clean", "severity": "", "top-1": clean["top1"], "top-5": clean["top5"], "drop": 0.0}]
    for (name, severity), m in results.items():
        rows.append({"corruption": name, "severity": severity, "top-1": m["top1"], "top-5": m["top5"],
                     "drop": clean["top1"] - m["top1"]})
    return rows
