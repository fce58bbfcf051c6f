"""Progressive multi-stage training: PMG (Du et al., ECCV 2020) and RMG-PMSI (BMVC 2022).

Each iteration runs ``S + 1`` phases on the same batch (``S`` = ``model.multi_stage.stages``). Phase
``n = 1 … S`` feeds stage ``n``'s classifier a broken-up image and back-propagates its cross-entropy
alone: a recursive mosaic with ``r = S − n + 1`` levels (RMG), or a ``2^(S−n+1)`` × ``2^(S−n+1)``
jigsaw (PMG: 8, 4, 2 for three stages). The last phase feeds the original image to the classifier on
the concatenated stages. Every phase is its own backward pass and optimiser step, so the parameters a
phase uses are updated before the next phase runs.

Switches for the ablations of RMG-PMSI (Table III, IV): ``method.augment`` picks what the phases see
(``none`` = the original image in every phase; ``cutmix``/``mixup`` = a fresh mix per phase, with mixed
targets); ``method.phases=False`` sums the ``S + 1`` losses into one step (no progressive training);
``model.multi_stage.interaction`` is the M. Prediction: ``concat`` = ``argmax ŷ_concat`` (P_concat,
the primary figure) and ``mix`` = ``argmax(Σ ŷ_n + ŷ_concat)`` (P_mix).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target
from torch import nn

from fgvc.config import Config
from fgvc.data.mixing import jigsaw, recursive_mosaic


class Progressive:
    def __init__(self, cfg: Config, num_classes: int):
        m = cfg.method
        self.augment = m.augment
        self.phases = m.phases
        self.num_classes = num_classes
        self.label_smoothing = cfg.train.label_smoothing
        self.mixup = None
        if m.augment in ("cutmix", "mixup"):
            alpha = {"mixup_alpha": m.mix_alpha if m.augment == "mixup" else 0.0,
                     "cutmix_alpha": m.mix_alpha if m.augment == "cutmix" else 0.0}
            self.mixup = Mixup(**alpha, label_smoothing=self.label_smoothing, num_classes=num_classes)

    def phase_input(self, images: torch.Tensor, labels: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage input and target for a phase ``level`` steps from the deepest (1 = the deepest stage)."""
        if self.augment == "rmg":
            return recursive_mosaic(images, level), labels
        if self.augment == "jigsaw":
            return jigsaw(images, 2 ** level), labels
        if self.mixup is not None and len(images) % 2 == 0:
            mixed = images.clone()  # timm mixes in place
            lam = self.mixup._mix_batch(mixed)
            return mixed, mixup_target(labels, self.num_classes, lam, self.label_smoothing)
        return images, labels

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 2:  # soft targets of cutmix / mixup
            return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def train_step(self, model: nn.Module, batch: dict, update: Callable[[torch.Tensor], float],
                   autocast: Callable) -> tuple[float, torch.Tensor]:
        """``S + 1`` phases; returns the sum of the phase losses and the last phase's logits."""
        images, labels = batch["image"], batch["label"]
        stages = model.stages
        losses = []
        for n in range(stages):  # stage n (0-based, shallow to deep) sees level S - n
            x, target = self.phase_input(images, labels, stages - n)
            with autocast():
                loss = self.loss(model.forward_all(x)[n], target)
            losses.append(update(loss) if self.phases else loss)
        with autocast():
            logits = model.forward_all(images)[-1]
            loss = self.loss(logits, labels)
        if self.phases:
            return sum(losses) + update(loss), logits
        return update(torch.stack(losses + [loss]).sum()), logits

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        outputs = model.forward_all(batch["image"])
        return {"concat": outputs[-1], "mix": torch.stack(outputs).sum(0)}
