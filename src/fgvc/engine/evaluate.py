"""Running a model over a loader: logits and labels, then metrics."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.analysis.metrics import classification_metrics


def move(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


@torch.no_grad()
def predict_loader(model: nn.Module, method, loader: DataLoader, device: torch.device, *,
                   amp: bool = False, channels_last: bool = False, desc: str = "eval",
                   progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` (float32, CPU) and labels ``[N]`` in loader order."""
    model.eval()
    all_logits, all_labels = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=None if progress else True, dynamic_ncols=True):
        if "image" not in batch:
            continue
        batch = move(batch, device, channels_last)
        with torch.autocast(device.type, enabled=amp):
            logits = method.predict(model, batch)
        all_logits.append(logits.float().cpu())
        all_labels.append(batch["label"].cpu())
    if not all_logits:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate(model: nn.Module, method, loader: DataLoader, device: torch.device, num_classes: int,
             topk: tuple[int, ...] = (1, 5), **kwargs) -> dict:
    logits, labels = predict_loader(model, method, loader, device, **kwargs)
    return classification_metrics(logits, labels, num_classes, topk)
