"""Per-step learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_factor``."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, warmup_factor: float,
                  min_factor: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based optimiser steps)."""
    if step < warmup_steps:
        return warmup_factor + (1 - warmup_factor) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                    warmup_epochs: float, warmup_factor: float, min_factor: float) -> LambdaLR:
    total, warmup = steps_per_epoch * epochs, int(round(steps_per_epoch * warmup_epochs))
    return LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, warmup_factor, min_factor))
