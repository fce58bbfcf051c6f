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
Metrics are counted batch by batch; only an ensemble keeps probabilities between checkpoints, summed
in a temporary memory-mapped file per setting and rule.
A fusion model reads the same metadata with every view. With several checkpoints every setting is
also evaluated as the ensemble.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.transforms import Views, eval_transform_for, flip_views, multi_scale_views, ten_crop_views
from fgvc.engine.evaluate import ScoreFile, combine_ranks, count_outputs, metrics_from_counts, move, predictions
from fgvc.errors import FgvcError
from fgvc.metrics import Counts

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
def view_batches(model: nn.Module, method, loader: DataLoader, device: torch.device, *, amp: bool = False,
                 channels_last: bool = False, desc: str = "tta", progress: bool = True
                 ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Per batch: each prediction rule's softmax probabilities ``[B, C]`` averaged over each image's
    views, and the labels ``[B]``.

    The loader's items hold a list of views (a :class:`Views` transform); each view is one forward of
    the whole batch, with the batch's metadata.
    """
    model.eval()
    for batch in tqdm(loader, desc=desc, leave=False, disable=None if progress else True, dynamic_ncols=True):
        if "image" not in batch:  # (the skipped images are named and counted by the headline evaluation)
            continue
        views = batch["image"] if isinstance(batch["image"], list) else [batch["image"]]
        total: dict[str, torch.Tensor] = {}
        for view in views:
            with torch.autocast(device.type, enabled=amp):
                outputs = predictions(method, model, move({**batch, "image": view}, device, channels_last))
            for name, logits in outputs.items():
                total[name] = total.get(name, 0) + logits.float().softmax(1).cpu()
        yield {name: summed / len(views) for name, summed in total.items()}, batch["label"].cpu()


def predict_views(model: nn.Module, method, loader: DataLoader, device: torch.device,
                  **kwargs) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``view_batches`` of the whole loader, concatenated: probabilities ``[N, C]`` per rule, labels ``[N]``."""
    chunks: dict[str, list[torch.Tensor]] = {}
    labels = []
    for probabilities, batch_labels in view_batches(model, method, loader, device, **kwargs):
        for name, p in probabilities.items():
            chunks.setdefault(name, []).append(p)
        labels.append(batch_labels)
    if not labels:
        raise FgvcError("test-time augmentation: the split has no readable image")
    return {name: torch.cat(parts) for name, parts in chunks.items()}, torch.cat(labels)


class EnsembleSum:
    """Each rule's probabilities summed over the ensemble's members, row by row, in ``ScoreFile``s
    (the members run one after the other, each over the whole split); the average is read back in
    blocks. Members must have the same prediction rules."""

    def __init__(self) -> None:
        self.files: dict[str, ScoreFile] = {}
        self.labels: list[torch.Tensor] = []
        self.members = self.row = 0

    def start_member(self) -> None:
        self.members += 1
        self.row = 0

    def add(self, probabilities: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        if self.members == 1:
            for name, p in probabilities.items():
                self.files.setdefault(name, ScoreFile()).append(p)
            self.labels.append(labels)
        else:
            if list(probabilities) != list(self.files):
                raise FgvcError("ensemble: the checkpoints have different prediction rules "
                                f"({'/'.join(self.files)} and {'/'.join(probabilities)}): ensemble models of one method")
            for name, p in probabilities.items():
                self.files[name].array()[self.row:self.row + len(p)] += p.numpy()
        self.row += len(labels)

    def average_batches(self, rows: int = 4096) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """The average over members in blocks of ``rows``: (probabilities per rule, labels)."""
        labels = torch.cat(self.labels)
        for begin in range(0, len(labels), rows):
            block = slice(begin, begin + rows)
            yield ({name: torch.from_numpy(f.array()[block] / self.members) for name, f in self.files.items()},
                   labels[block])


def tta_row(setting: str, views: int, checkpoints: int, counts: dict[str, Counts],
            topk: tuple[int, ...], groups=None) -> dict:
    """One table row: top-k and mean per-class of the primary rule, top-1 of the others."""
    m = metrics_from_counts(counts, groups)
    row = {"setting": setting, "checkpoints": checkpoints, "views": views}
    row |= {f"top-{k}": m[f"top{k}"] for k in topk} | {"mean per-class": m["mean_per_class"]}
    if "mean_over_datasets" in m:
        row["mean over datasets"] = m["mean_over_datasets"]
    for name, r in list(m.get("rules", {}).items())[1:]:
        row[f"{name} top-1"] = r[f"top{topk[0]}"]
    return row


def evaluate_tta(eval_cfg, samples: list, members: Iterable[tuple[nn.Module, object, object, torch.device]],
                 num_classes: int, groups=None, *, ensemble_size: int = 1, progress: bool = True,
                 loader_options: dict | None = None, gather: Callable | None = None) -> list[dict]:
    """The TTA table: the first member's row for every setting, then (several members) the ensemble's.

    ``members``: ``(model, method, data_cfg, device)`` per checkpoint, ``ensemble_size`` of them,
    consumed one at a time (a generator loads each checkpoint only when its turn comes); ``samples``:
    the split's samples. Metrics are counted batch by batch; an ensemble's probabilities are summed
    in mapped files (``EnsembleSum``). ``loader_options`` (rank, world_size) and ``gather`` shard the
    split under DDP, as ``evaluate`` does: each rank counts its share and the counts are added.
    """
    topk, settings = eval_cfg.topk, None
    first: dict[str, dict[str, Counts]] = {}
    sums: dict[str, EnsembleSum] = {}
    for member, (model, method, data_cfg, device) in enumerate(members):
        settings = settings or tta_settings(eval_cfg, data_cfg)
        dataset = make_dataset(data_cfg, samples, train=False)  # the member's own metadata inputs
        for name, (views, _) in settings.items():
            dataset = copy.copy(dataset)
            dataset.transform = views
            loader = make_loader(data_cfg, dataset, train=False, **(loader_options or {}))
            batches = view_batches(model, method, loader, device, desc=name, progress=progress)
            if ensemble_size > 1:
                sums.setdefault(name, EnsembleSum()).start_member()
                batches = _tee(batches, sums[name].add)
            if member == 0:
                first[name] = count_outputs(batches, num_classes, topk)
            else:
                for _ in batches:
                    pass

    def reduced(counts: dict[str, Counts]) -> dict[str, Counts]:
        return combine_ranks(gather(counts)) if gather is not None else counts

    first = {name: reduced(counts) for name, counts in first.items()}
    if not all(first.values()):  # the same answer on every rank: the counts are the whole split's
        raise FgvcError("test-time augmentation: the split has no readable image")
    rows = [tta_row(name, count, 1, first[name], topk, groups) for name, (_, count) in settings.items()]
    if ensemble_size > 1:
        rows += [tta_row(name, count, sums[name].members,
                         reduced(count_outputs(sums[name].average_batches(), num_classes, topk)), topk, groups)
                 for name, (_, count) in settings.items()]
    return rows


def _tee(batches: Iterator, consumer: Callable) -> Iterator:
    """``batches`` unchanged, each also handed to ``consumer(*batch)`` on its way."""
    for batch in batches:
        consumer(*batch)
        yield batch
