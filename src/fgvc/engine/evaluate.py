"""Running a model over a loader: logits and labels, then metrics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.data.joint import dataset_index
from fgvc.metrics import classification_metrics, topk_correct


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
def predict_loader_all(model: nn.Module, method, loader: DataLoader, device: torch.device, *,
                       amp: bool = False, channels_last: bool = False, desc: str = "eval",
                       progress: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Logits ``[N, C]`` (float32, CPU) of every prediction rule, and labels ``[N]``, in loader order."""
    model.eval()
    all_logits: dict[str, list[torch.Tensor]] = {}
    all_labels = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=None if progress else True, dynamic_ncols=True):
        if "image" not in batch:
            continue
        batch = move(batch, device, channels_last)
        with torch.autocast(device.type, enabled=amp):
            outputs = predictions(method, model, batch)
        for name, logits in outputs.items():
            all_logits.setdefault(name, []).append(logits.float().cpu())
        all_labels.append(batch["label"].cpu())
    if not all_labels:
        return {"logits": torch.zeros(0, 0)}, torch.zeros(0, dtype=torch.long)
    return {name: torch.cat(chunks) for name, chunks in all_logits.items()}, torch.cat(all_labels)


def predict_loader(model: nn.Module, method, loader: DataLoader, device: torch.device,
                   **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the primary prediction rule and labels."""
    outputs, labels = predict_loader_all(model, method, loader, device, **kwargs)
    return next(iter(outputs.values())), labels


def evaluate(model: nn.Module, method, loader: DataLoader, device: torch.device, num_classes: int,
             topk: tuple[int, ...] = (1, 5), groups: list[tuple[str, int]] | None = None,
             gather: Callable | None = None, **kwargs) -> dict:
    """Metrics of the primary rule; with several rules, ``"rules"`` maps each to its top-k figures.

    ``groups`` (dataset name, class count) of a joint label space add ``"per_dataset"`` top-1 (a
    prediction counts as right only if it is the right class of the whole union) and their mean.
    ``gather(outputs, labels)``: under DDP, the loader holds this rank's share and ``gather`` returns
    every rank's outputs (``DistContext.gather_outputs``), so the metrics cover the whole split.
    """
    outputs, labels = predict_loader_all(model, method, loader, device, **kwargs)
    if gather is not None:
        outputs, labels = gather(outputs, labels)
    return metrics_from_outputs(outputs, labels, num_classes, topk, groups)


def metrics_from_outputs(outputs: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int,
                         topk: tuple[int, ...] = (1, 5), groups: list[tuple[str, int]] | None = None) -> dict:
    """``evaluate``'s metrics from scores already computed (logits, or TTA's averaged probabilities)."""
    names = list(outputs)
    metrics = classification_metrics(outputs[names[0]], labels, num_classes, topk)
    if groups and len(groups) > 1:
        correct = outputs[names[0]].argmax(1) == labels
        dataset, per_dataset = dataset_index(labels, [count for _, count in groups])[0], {}
        for n, (name, _) in enumerate(groups):
            mask = dataset == n
            per_dataset[name] = 100.0 * correct[mask].float().mean().item() if mask.any() else float("nan")
        metrics["per_dataset"] = per_dataset
        metrics["mean_over_datasets"] = sum(per_dataset.values()) / len(per_dataset)
    if len(names) > 1:
        metrics["rules"] = {name: {f"top{k}": 100.0 * topk_correct(outputs[name], labels, k).float().mean().item()
                                   for k in topk} for name in names}
    return metrics
