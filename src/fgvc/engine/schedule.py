"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_factor``.

The rate changes after every optimiser step by default. With ``schedule.per_epoch`` it changes once
per epoch, as PMG's released ``cosine_anneal_schedule`` sets it: epoch ``e`` of ``E`` (0-based) runs
at ``lr · ½(1 + cos(π e / E))``, so the last epoch is still above 0. ``schedule.cosine_epochs``
stretches the cosine beyond the run (the rate then stops short of its minimum), which is what the
RMG-PMSI release's ``CosineAnnealingLR`` does: its length counts images, while it steps per batch.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from fgvc.config import ScheduleConfig


def warmup_cosine(step: int, total_steps: float, warmup_steps: int, warmup_factor: float,
                  min_factor: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based; optimiser steps, or epochs)."""
    if step < warmup_steps:
        return warmup_factor + (1 - warmup_factor) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, schedule: ScheduleConfig) -> LambdaLR:
    """A scheduler stepped once per optimiser step (per iteration for multi-phase methods)."""
    s = schedule
    epochs = s.cosine_epochs or s.epochs
    if s.per_epoch:
        warmup = int(s.warmup_epochs)
        return LambdaLR(optimizer, lambda step: warmup_cosine(step // steps_per_epoch, epochs, warmup,
                                                              s.warmup_factor, s.min_lr_factor))
    total, warmup = steps_per_epoch * epochs, int(round(steps_per_epoch * s.warmup_epochs))
    return LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, s.warmup_factor, s.min_lr_factor))
