"""One forward, one loss: the image-only baseline (and, later, every metadata-fusion model).

A method turns a batch into a loss for training and into logits for prediction; the engine does
everything else. Mixup/cutmix come from timm (its ``Mixup`` draws from numpy's global RNG, which the
checkpoints save, so resumed runs mix identically). The metadata is mixed with the same partner and
weight as the images, as the Dynamic MLP authors' ``mixup`` does (timm pairs sample i with B-1-i).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target
from torch import nn

from fgvc.data.mixing import PairedMixing
from fgvc.methods.base import Method
from fgvc.sections import MethodSection

if TYPE_CHECKING:
    from fgvc.config import Config


class SupervisedConfig(MethodSection):
    """``method.name=supervised`` (the default): no keys of its own (``train.*`` sets the loss and mixing)."""

    name: Literal["supervised"] = "supervised"


class Supervised(Method):
    section = SupervisedConfig

    def __init__(self, cfg: Config, num_classes: int, model: nn.Module | None = None,
                 num_train: int | None = None):
        t = cfg.train
        self.label_smoothing = t.label_smoothing
        self.mixup = None
        if t.mixup_alpha > 0 or t.cutmix_alpha > 0:
            self.mixup = Mixup(mixup_alpha=t.mixup_alpha, cutmix_alpha=t.cutmix_alpha, prob=t.mix_prob,
                               label_smoothing=t.label_smoothing, num_classes=num_classes)
            self.pairing = PairedMixing("train.mixup_alpha / train.cutmix_alpha", cfg.data.batch_size)

    def training_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss, logits)``; logits are of the (possibly mixed) input, for running accuracy."""
        images, labels, meta = batch["image"], batch["label"], batch["meta"]
        if self.mixup is not None and self.pairing.can_mix(len(images)):
            images = images.clone()  # timm mixes in place
            lam = self.mixup._mix_batch(images)
            targets = mixup_target(labels, self.mixup.num_classes, lam, self.mixup.label_smoothing)
            if meta.shape[1]:
                meta = lam * meta + (1 - lam) * meta.flip(0)
            logits = model(images, meta)
            return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean(), logits
        logits = model(images, meta)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing), logits

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(batch["image"], batch["meta"])
