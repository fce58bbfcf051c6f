"""Test-time augmentation and checkpoint ensembles (Dynamic MLP paper, Supplementary Table S1).

The headline figure of a report stays the single model's single centre crop; each setting asked in
the config's ``eval`` section is one more row of a separate table:

- ``centre crop``: the evaluation pipeline (resize to image_size / crop_pct, centre crop), 1 view;
- ``centre crop + flip`` (``eval.hflip``): the centre crop and its mirror image, 2 views;
- ``multi-scale`` (``eval.tta_scales``): the same pipeline at each listed resolution, 1 view each;
- ``ten-crop`` (``eval.ten_crop``): torchvision's ``TenCrop`` of the resize (4 corners, centre, and
  their mirrors), 10 views.

Softmax probabilities are averaged over an image's views, then, for an ensemble (several
checkpoints), over the checkpoints; every prediction rule separately (PMSI's ``concat`` and ``mix``).
A fusion model reads the same metadata with every view. With several checkpoints every setting is
also evaluated as the ensemble.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.transforms import Views, eval_transform_for, flip_views, multi_scale_views, ten_crop_views
from fgvc.engine.evaluate import metrics_from_outputs, move, predictions
from fgvc.errors import FgvcError

CENTRE = "centre crop"


def wants_tta(eval_cfg) -> bool:
    return bool(eval_cfg.hflip or eval_cfg.ten_crop or eval_cfg.tta_scales)


def tta_settings(eval_cfg, data_cfg) -> dict[str, tuple[Views, int]]:
    """Setting name -> (the views it takes of each image, how many); the centre crop first."""
    size, crop_pct, resize = data_cfg.image_size, data_cfg.crop_pct, data_cfg.resize
    norm = {"mean": data_cfg.mean, "std": data_cfg.std}
    settings = {CENTRE: (Views([eval_transform_for(data_cfg)]), 1)}
    if eval_cfg.hflip:
        settings["centre crop + flip"] = (flip_views(size, crop_pct, resize, **norm), 2)
    if eval_cfg.tta_scales:
        scales = "/".join(map(str, eval_cfg.tta_scales))
        settings[f"multi-scale {scales} px"] = (multi_scale_views(eval_cfg.tta_scales, size, crop_pct, resize, **norm),
                                                len(eval_cfg.tta_scales))
    if eval_cfg.ten_crop:
        settings["ten-crop"] = (ten_crop_views(size, crop_pct, resize, **norm), 10)
    return settings


@torch.no_grad()
def predict_views(model: nn.Module, method, loader: DataLoader, device: torch.device, *, amp: bool = False,
                  channels_last: bool = False, desc: str = "tta", progress: bool = True
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per prediction rule, softmax probabilities ``[N, C]`` averaged over each image's views; labels ``[N]``.

    The loader's items hold a list of views (a :class:`Views` transform); each view is one forward of
    the whole batch, with the batch's metadata.
    """
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    labels = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=None if progress else True, dynamic_ncols=True):
        if "image" not in batch:
            continue
        views = batch["image"] if isinstance(batch["image"], list) else [batch["image"]]
        total: dict[str, torch.Tensor] = {}
        for view in views:
            with torch.autocast(device.type, enabled=amp):
                outputs = predictions(method, model, move({**batch, "image": view}, device, channels_last))
            for name, logits in outputs.items():
                total[name] = total.get(name, 0) + logits.float().softmax(1).cpu()
        for name, summed in total.items():
            chunks.setdefault(name, []).append(summed / len(views))
        labels.append(batch["label"].cpu())
    if not labels:
        raise FgvcError("test-time augmentation: the split has no readable image")
    return {name: torch.cat(parts) for name, parts in chunks.items()}, torch.cat(labels)


def average_probabilities(members: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The ensemble: each rule's probabilities averaged over the members (checkpoints)."""
    rules = list(members[0])
    if any(list(m) != rules for m in members):
        raise FgvcError("ensemble: the checkpoints have different prediction rules "
                        f"({', '.join('/'.join(m) for m in members)}): ensemble models of one method")
    return {name: torch.stack([m[name] for m in members]).mean(0) for name in rules}


def tta_row(setting: str, views: int, checkpoints: int, probabilities: dict[str, torch.Tensor],
            labels: torch.Tensor, num_classes: int, topk: tuple[int, ...], groups=None) -> dict:
    """One table row: top-k and mean per-class of the primary rule, top-1 of the others."""
    m = metrics_from_outputs(probabilities, labels, num_classes, topk, groups)
    row = {"setting": setting, "checkpoints": checkpoints, "views": views}
    row |= {f"top-{k}": m[f"top{k}"] for k in topk} | {"mean per-class": m["mean_per_class"]}
    if "mean_over_datasets" in m:
        row["mean over datasets"] = m["mean_over_datasets"]
    for name, r in list(m.get("rules", {}).items())[1:]:
        row[f"{name} top-1"] = r[f"top{topk[0]}"]
    return row


def evaluate_tta(eval_cfg, samples: list, members: Iterable[tuple[nn.Module, object, object, torch.device]],
                 num_classes: int, groups=None, *, progress: bool = True, loader_options: dict | None = None,
                 gather: Callable | None = None) -> list[dict]:
    """The TTA table: the first member's row for every setting, then (several members) the ensemble's.

    ``members``: ``(model, method, data_cfg, device)`` per checkpoint, consumed one at a time (a
    generator loads each checkpoint only when its turn comes); ``samples``: the split's samples.
    ``loader_options`` (rank, world_size) and ``gather`` shard the split under DDP, as ``evaluate`` does.
    """
    per_member, labels, settings = [], None, None
    for model, method, data_cfg, device in members:
        settings = settings or tta_settings(eval_cfg, data_cfg)
        dataset = make_dataset(data_cfg, samples, train=False)  # the member's own metadata inputs
        probabilities = {}
        for name, (views, _) in settings.items():
            dataset = copy.copy(dataset)
            dataset.transform = views
            loader = make_loader(data_cfg, dataset, train=False, **(loader_options or {}))
            probabilities[name], labels = predict_views(model, method, loader, device, desc=name, progress=progress)
            if gather is not None:
                probabilities[name], labels = gather(probabilities[name], labels)
        per_member.append(probabilities)
    rows = [tta_row(name, count, 1, per_member[0][name], labels, num_classes, eval_cfg.topk, groups)
            for name, (_, count) in settings.items()]
    if len(per_member) > 1:
        rows += [tta_row(name, count, len(per_member), average_probabilities([p[name] for p in per_member]),
                         labels, num_classes, eval_cfg.topk, groups) for name, (_, count) in settings.items()]
    return rows
