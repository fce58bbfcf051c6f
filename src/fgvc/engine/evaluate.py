"""Running a model over a loader: metrics counted batch by batch, or scores kept in a mapped file.

Evaluation never holds the ``[N, C]`` scores: each batch's outputs go into ``Counts`` (top-k hits,
per-class counts, mistakes) and are dropped, so its memory does not grow with the split; under DDP
each rank counts its own share and the counts are added up (``gather`` = ``DistContext.gather_object``).
Callers that need the scores themselves (a location prior multiplied in, transfer analyses) get them
from ``predict_loader_all``, written row by row to a temporary memory-mapped file (``ScoreFile``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.metrics import Counts

log = logging.getLogger(__name__)


def move(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def predictions(method, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """A method's ``predict`` as a dict of named prediction rules (one, ``"logits"``, for most methods).

    Multi-output methods (PMG / RMG-PMSI: ``concat`` and ``mix``) return a dict whose first entry is
    the primary rule: the one model selection and the headline figures use.
    """
    out = method.predict(model, batch)
    return out if isinstance(out, dict) else {"logits": out}


@torch.no_grad()
def batch_outputs(model: nn.Module, method, loader: DataLoader, device: torch.device, *, amp: bool = False,
                  channels_last: bool = False, desc: str = "eval", progress: bool = True,
                  skipped: list[str] | None = None) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Per batch (in loader order): float32 outputs of every prediction rule, and the labels.
    Unreadable images skipped on the way (``data.bad_images=skip``) are logged, and their messages
    (which name the files) appended to ``skipped``."""
    model.eval()
    for batch in tqdm(loader, desc=desc, leave=False, disable=None if progress else True, dynamic_ncols=True):
        for message in batch.get("skipped", ()):
            log.warning("skipped %s", message)
            if skipped is not None:
                skipped.append(message)
        if "image" not in batch:  # every image of the batch was unreadable (and skipped)
            continue
        batch = move(batch, device, channels_last)
        with torch.autocast(device.type, enabled=amp):
            outputs = predictions(method, model, batch)
        yield {name: logits.float() for name, logits in outputs.items()}, batch["label"]


def count_outputs(batches: Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]], num_classes: int,
                  topk: tuple[int, ...] = (1, 5)) -> dict[str, Counts]:
    """``Counts`` per prediction rule over (outputs, labels) batches."""
    counts: dict[str, Counts] = {}
    for outputs, labels in batches:
        for name, scores in outputs.items():
            counts.setdefault(name, Counts(num_classes, topk)).update(scores, labels)
    return counts


def combine_ranks(parts: list[dict[str, Counts]]) -> dict[str, Counts]:
    """Every rank's counts per rule added up (a rank whose share was empty has none)."""
    filled = [part for part in parts if part]
    if not filled:
        return {}
    return {name: Counts.combine(part[name] for part in filled) for name in filled[0]}


def evaluate(model: nn.Module, method, loader: DataLoader, device: torch.device, num_classes: int,
             topk: tuple[int, ...] = (1, 5), groups: list[tuple[str, int]] | None = None,
             gather: Callable | None = None, **kwargs) -> dict:
    """Metrics of the primary rule; with several rules, ``"rules"`` maps each to its top-k figures.

    ``groups`` (dataset name, class count) of a joint label space add ``"per_dataset"`` top-1 (a
    prediction counts as right only if it is the right class of the whole union) and their mean.
    ``gather(obj)``: under DDP the loader holds this rank's share and ``gather`` returns every rank's
    object (``DistContext.gather_object``): the ranks' counts are added, so the metrics cover the
    whole split with each sample counted once. Unreadable images skipped (``data.bad_images=skip``)
    are named in ``"skipped"``: the figures are over ``num_samples`` of the split's ``num_images``.
    """
    skipped: list[str] = []
    batches = batch_outputs(model, method, loader, device, skipped=skipped, **kwargs)
    counts = count_outputs(batches, num_classes, topk)
    if gather is not None:
        counts = combine_ranks(gather(counts))
        skipped = [message for part in gather(skipped) for message in part]
    metrics = metrics_from_counts(counts or {"logits": Counts(num_classes, topk)}, groups)
    return metrics | {"num_images": metrics["num_samples"] + len(skipped), "skipped": skipped}


def metrics_from_counts(counts: dict[str, Counts], groups: list[tuple[str, int]] | None = None) -> dict:
    """``evaluate``'s metrics from the counts of each prediction rule (the first is the primary)."""
    names = list(counts)
    primary = counts[names[0]]
    metrics = primary.metrics()
    if groups and len(groups) > 1:
        starts = np.cumsum([0] + [count for _, count in groups])
        per_dataset = {name: primary.group_top1(int(start), count) for (name, count), start in zip(groups, starts)}
        metrics["per_dataset"] = per_dataset
        metrics["mean_over_datasets"] = sum(per_dataset.values()) / len(per_dataset)
    if len(names) > 1:
        metrics["rules"] = {name: counts[name].topk_percent() for name in names}
    return metrics


class ScoreFile:
    """Rows of float32 scores appended batch by batch to a temporary file mapped in memory: the
    ``[N, C]`` scores of a large split live in the page cache (written back to disk under memory
    pressure), not in the process's own memory. The file has no name and goes with its last map.
    ``tempfile``'s folder (``TMPDIR``) holds it."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="fgvc-scores-")
        self._map: np.ndarray | None = None
        self.rows = 0

    def append(self, scores: torch.Tensor | np.ndarray) -> None:
        block = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
        self.reserve(self.rows + len(block), block.shape[1])
        self._map[self.rows:self.rows + len(block)] = block
        self.rows += len(block)

    def reserve(self, rows: int, columns: int) -> None:
        """Room for ``rows`` rows (growing the file by doubling)."""
        if self._map is not None and rows <= len(self._map):
            return
        capacity = max(rows, 2 * (len(self._map) if self._map is not None else 0), 256)
        self._file.truncate(capacity * columns * 4)
        self._map = np.memmap(self._file, np.float32, "r+", shape=(capacity, columns))

    def array(self) -> np.ndarray:
        """The rows written so far (a view of the mapped file)."""
        return self._map[: self.rows] if self._map is not None else np.zeros((0, 0), np.float32)


def predict_loader_all(model: nn.Module, method, loader: DataLoader, device: torch.device,
                       **kwargs) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Scores ``[N, C]`` (float32, CPU, backed by a ``ScoreFile``) of every prediction rule, and labels
    ``[N]``, in loader order."""
    files: dict[str, ScoreFile] = {}
    labels = []
    for outputs, batch_labels in batch_outputs(model, method, loader, device, **kwargs):
        for name, scores in outputs.items():
            files.setdefault(name, ScoreFile()).append(scores)
        labels.append(batch_labels.cpu())
    if not labels:
        return {"logits": torch.zeros(0, 0)}, torch.zeros(0, dtype=torch.long)
    return {name: torch.from_numpy(f.array()) for name, f in files.items()}, torch.cat(labels)


def predict_loader(model: nn.Module, method, loader: DataLoader, device: torch.device,
                   **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the primary prediction rule and labels."""
    outputs, labels = predict_loader_all(model, method, loader, device, **kwargs)
    return next(iter(outputs.values())), labels
