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
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from fgvc.config import Config
from fgvc.data.dataset import ImageDataset, collate
from fgvc.data.splits import prepare_splits
from fgvc.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_geometry
from fgvc.engine.evaluate import evaluate
from fgvc.engine.inference import eval_loader, load_for_eval
from fgvc.engine.report import markdown_table

log = logging.getLogger(__name__)

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


def corrupted_transform(size: int, crop_pct: float, name: str, severity: float, resize: int | None = None,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """The evaluation pipeline with the corruption between pixel scaling and normalisation."""
    return v2.Compose(eval_geometry(size, crop_pct, resize)
                      + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), corruption(name, severity),
                         v2.Normalize(list(mean), list(std))])


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


def evaluate_robustness(cfg: Config, checkpoint: str | Path, corruptions: list[str], split: str = "test") -> dict:
    """Clean accuracy, then every severity of each corruption; writes ``report_robustness.{md,json}``."""
    splits = prepare_splits(cfg.data)
    _, model, method, data_cfg, device = load_for_eval(cfg, checkpoint, splits.classes)
    clean_loader = eval_loader(data_cfg, splits.samples(split))
    run = dict(device=device, num_classes=len(splits.classes), topk=cfg.eval.topk, progress=cfg.train.progress)
    clean = evaluate(model, method, clean_loader, desc="clean", **run)
    results = {}
    for name in corruptions:
        for severity in SEVERITIES[name]:
            transform = corrupted_transform(data_cfg.image_size, data_cfg.crop_pct, name, severity, data_cfg.resize,
                                            data_cfg.mean, data_cfg.std)
            loader = corrupted_loader(clean_loader.dataset, transform,
                                      data_cfg.eval_batch_size or 2 * data_cfg.batch_size, data_cfg.num_workers)
            results[(name, severity)] = evaluate(model, method, loader, desc=f"{name} {severity}", **run)
            log.info("%s %s: top-1 %.2f (clean %.2f)", name, severity, results[(name, severity)]["top1"],
                     clean["top1"])
    rows = robustness_rows(clean, results)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "report_robustness.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "split": split, "rows": rows}, indent=2))
    (cfg.run_dir / "report_robustness.md").write_text("\n".join([
        f"# {cfg.name}: robustness on {split}", "", f"Checkpoint `{checkpoint}`; drop = clean top-1 minus "
        "corrupted top-1. Colour jitter: brightness, contrast and saturation factors in [1-s, 1+s]; "
        "Gaussian noise: σ on [0, 1] pixels. One fixed draw per image.", "", markdown_table(rows), ""]))
    return {"split": split, "rows": rows}
