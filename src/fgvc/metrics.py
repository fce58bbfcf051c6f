"""Classification metrics from logits: top-k, per-class accuracy, hardest confusions."""

from __future__ import annotations

import numpy as np
import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``[N]``: is the label among the k highest scores (k clipped to the class count)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class; NaN for a class with no sample in this split."""
    total = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels[pred == labels], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def hardest_confusions(pred: np.ndarray, labels: np.ndarray, top: int = 10) -> list[tuple[int, int, int]]:
    """The most frequent (true, predicted, count) mistakes."""
    wrong = pred != labels
    pairs, counts = np.unique(np.stack([labels[wrong], pred[wrong]], axis=1), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return [(int(pairs[i, 0]), int(pairs[i, 1]), int(counts[i])) for i in order]


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           topk: tuple[int, ...] = (1, 5)) -> dict:
    """Top-k accuracies in percent, mean per-class accuracy, per-class list and hardest confusions."""
    labels = labels.long()
    out: dict = {"num_samples": int(len(labels))}
    for k in topk:
        out[f"top{k}"] = 100.0 * topk_correct(logits, labels, k).float().mean().item() if len(labels) else 0.0
    pred = logits.argmax(dim=1).numpy()
    per_class = per_class_accuracy(pred, labels.numpy(), num_classes)
    out["mean_per_class"] = 100.0 * float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0
    out["per_class"] = [None if np.isnan(a) else 100.0 * float(a) for a in per_class]
    out["confusions"] = hardest_confusions(pred, labels.numpy())
    return out
