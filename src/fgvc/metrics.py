"""Classification metrics: top-k, per-class accuracy, hardest confusions — counted batch by batch.

``Counts`` adds each batch's scores up into integers (top-k hits, per-class totals and hits, and the
(true, predicted) pairs of the mistakes) and forgets the scores, so evaluating 100 k images of
10 k classes holds a few arrays of 10 k counts, not a 100 k × 10 k matrix. Counts of disjoint parts
(batches, DDP ranks) add up exactly, so the figures do not depend on how the split was cut.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``[N]``: is the label among the k highest scores (k clipped to the class count)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


class Counts:
    """Everything ``metrics()`` reports, accumulated by ``update(scores, labels)`` one batch at a time."""

    def __init__(self, num_classes: int, topk: Iterable[int] = (1, 5)):
        self.num_classes, self.topk = num_classes, tuple(topk)
        self.hits = np.zeros(len(self.topk), np.int64)  # samples whose label is in the top k
        self.total = np.zeros(num_classes, np.int64)  # samples per true class
        self.correct = np.zeros(num_classes, np.int64)  # top-1 hits per true class
        # the top-1 mistakes as keys true * num_classes + predicted: distinct ones with their counts,
        # and those of the batches since (one key per mistake)
        self._keys, self._counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._pending: list[np.ndarray] = []

    @property
    def num_samples(self) -> int:
        return int(self.total.sum())

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> Counts:
        if not len(labels):
            return self
        labels = labels.to(scores.device).long()
        self.hits += [int(topk_correct(scores, labels, k).sum()) for k in self.topk]
        pred, true = scores.argmax(dim=1).cpu().numpy(), labels.cpu().numpy()
        right = pred == true
        self.total += np.bincount(true, minlength=self.num_classes)[: self.num_classes]
        self.correct += np.bincount(true[right], minlength=self.num_classes)[: self.num_classes]
        self._pending.append((true[~right] * self.num_classes + pred[~right]).astype(np.int64))
        return self

    def confusion_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct mistakes as keys ``true * num_classes + predicted`` (sorted) and their counts."""
        if self._pending:
            ones = [np.ones(len(p), np.int64) for p in self._pending]
            self._keys, self._counts = _add_pairs([self._keys, *self._pending], [self._counts, *ones])
            self._pending = []
        return self._keys, self._counts

    def __getstate__(self) -> dict:  # compact before travelling to another rank
        self.confusion_pairs()
        return self.__dict__.copy()

    @classmethod
    def combine(cls, parts: Iterable[Counts]) -> Counts:
        """The counts of the union of disjoint parts (batches of one split, or the ranks' shares)."""
        parts = list(parts)
        out = cls(parts[0].num_classes, parts[0].topk)
        for part in parts:
            out.hits += part.hits
            out.total += part.total
            out.correct += part.correct
        pairs = [part.confusion_pairs() for part in parts]
        out._keys, out._counts = _add_pairs([k for k, _ in pairs], [c for _, c in pairs])
        return out

    def topk_percent(self) -> dict[str, float]:
        n = self.num_samples
        return {f"top{k}": 100.0 * int(h) / n if n else 0.0 for k, h in zip(self.topk, self.hits)}

    def per_class(self) -> np.ndarray:
        """Accuracy of each class; NaN for a class with no sample in this split."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.total > 0, self.correct / np.maximum(self.total, 1), np.nan)

    def hardest_confusions(self, top: int = 10) -> list[tuple[int, int, int]]:
        """The most frequent (true, predicted, count) mistakes; ties in (true, predicted) order."""
        keys, counts = self.confusion_pairs()
        order = np.argsort(-counts, kind="stable")[:top]
        return [(int(keys[i] // self.num_classes), int(keys[i] % self.num_classes), int(counts[i])) for i in order]

    def metrics(self) -> dict:
        """Top-k accuracies in percent, mean per-class accuracy, per-class list and hardest confusions."""
        per_class = self.per_class()
        return {"num_samples": self.num_samples, **self.topk_percent(),
                "mean_per_class": 100.0 * float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0,
                "per_class": [None if np.isnan(a) else 100.0 * float(a) for a in per_class],
                "confusions": self.hardest_confusions()}

    def group_top1(self, first: int, count: int) -> float:
        """Top-1 in percent over the samples whose true class is in ``[first, first + count)``."""
        n = int(self.total[first:first + count].sum())
        return 100.0 * int(self.correct[first:first + count].sum()) / n if n else float("nan")


def _add_pairs(keys: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the sum of their counts."""
    distinct, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    return distinct, np.bincount(inverse, np.concatenate(counts), len(distinct)).astype(np.int64)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           topk: tuple[int, ...] = (1, 5)) -> dict:
    """``Counts.metrics()`` of scores already held whole (``[N, C]``)."""
    return Counts(num_classes, topk).update(logits, labels).metrics()
