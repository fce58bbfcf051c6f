"""Progressive multi-stage training: PMG (Du et al., ECCV 2020) and RMG-PMSI (BMVC 2022).

Each iteration runs ``S + 1`` phases on the same batch (``S`` = ``model.multi_stage.stages``). Phase
``n = 1 … S`` feeds stage ``n``'s classifier a broken-up image and back-propagates its cross-entropy
alone: a recursive mosaic with ``r = S − n + 1`` levels (RMG), or a ``2^(S−n+1)`` × ``2^(S−n+1)``
jigsaw (PMG: 8, 4, 2 for three stages). The last phase feeds the original image to the classifier on
the concatenated stages. Every phase is its own backward pass and optimiser step, so the parameters a
phase uses are updated before the next phase runs.

Switches for the ablations of RMG-PMSI (Table III, IV): ``method.augment`` picks what the phases see
(``none`` = the original image in every phase; ``cutmix``/``mixup``/``snapmix`` = a fresh mix per
phase, with mixed targets); ``method.phases=False`` sums the ``S + 1`` losses into one step (no progressive training);
``model.multi_stage.interaction`` is the M. Prediction: ``concat`` = ``argmax ŷ_concat`` (P_concat,
the primary figure) and ``mix`` = ``argmax(Σ ŷ_n + ŷ_concat)`` (P_mix).

As the released scripts train (both PMG's and RMG-PMSI's): ``method.concat_loss_weight`` multiplies the
last phase's loss (they use 2); ``method.patch_order=release`` gives the whole batch one jigsaw or
mosaic order drawn as they draw it. The step reports each phase's plain cross-entropy (``stage1`` …
``stageS``, ``concat``, before the weight) and their mean as the loss to show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target
from pydantic import Field
from torch import nn

from fgvc.data.mixing import PairedMixing, box_share, jigsaw, paste_box, random_box, recursive_mosaic
from fgvc.methods.base import Method
from fgvc.sections import MethodSection

if TYPE_CHECKING:
    from fgvc.config import Config


class ProgressiveConfig(MethodSection):
    """``method.name=progressive``: PMG / RMG-PMSI phases on ``model.head=multi_stage``."""

    name: Literal["progressive"] = "progressive"
    heads: ClassVar[tuple[str, ...]] = ("multi_stage",)
    # what stage n's phase sees. rmg: recursive mosaic r = S-n+1 (the R of RMG-PMSI); jigsaw: PMG's
    # 2^(S-n+1) x 2^(S-n+1) jigsaw; cutmix / mixup / snapmix: a fresh mix per phase (Table IV); none: the
    # original image
    augment: Literal["rmg", "jigsaw", "cutmix", "mixup", "snapmix", "none"] = "rmg"
    # rmg / jigsaw: per_image = a fresh uniform patch order for every image; release = one order for the
    # whole batch, drawn as both released generators draw it (every patch moves)
    patch_order: Literal["per_image", "release"] = "per_image"
    concat_loss_weight: float = Field(1.0, gt=0)  # the last (whole-image) phase's loss x this (releases: 2)
    mix_alpha: float = Field(1.0, gt=0)  # with cutmix / mixup / snapmix: Beta(alpha, alpha)
    # True = one backward and optimiser step per phase (the P of RMG-PMSI); False = the phases' losses
    # summed into one step
    phases: bool = True


class Progressive(Method):
    section = ProgressiveConfig
    forwards = ("forward_all",)

    @classmethod
    def unused_parameters(cls, section: ProgressiveConfig) -> bool:
        """With ``method.phases`` phase n back-propagates stage n's classifier alone."""
        return section.phases

    @classmethod
    def card(cls, config: dict) -> str:
        augment = config["method"].get("augment")
        interaction = config["model"].get("multi_stage", {}).get("interaction")
        name = ("RMG-PMSI" if augment == "rmg" and interaction else "PMG" if augment == "jigsaw"
                else "progressive multi-stage training")
        return (f"{name}: progressive multi-stage training (augmentation `{augment}`, multi-stage interaction "
                f"{'on' if interaction else 'off'}); the file's output is the concatenated stages' classifier")

    def __init__(self, cfg: Config, num_classes: int, model: nn.Module | None = None,
                 num_train: int | None = None):
        m = cfg.method
        self.augment = m.augment
        self.phases = m.phases
        self.concat_loss_weight = m.concat_loss_weight
        self.release_order = m.patch_order == "release"
        self.num_classes = num_classes
        self.label_smoothing = cfg.train.label_smoothing
        self.mixup = None
        self.mix_alpha = m.mix_alpha
        if m.augment in ("cutmix", "mixup"):
            alpha = {"mixup_alpha": m.mix_alpha if m.augment == "mixup" else 0.0,
                     "cutmix_alpha": m.mix_alpha if m.augment == "cutmix" else 0.0}
            self.mixup = Mixup(**alpha, label_smoothing=self.label_smoothing, num_classes=num_classes)
            self.pairing = PairedMixing(f"method.augment={m.augment}", cfg.data.batch_size)

    def phase_input(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage input and target for a phase ``level`` steps from the deepest (1 = the deepest stage)."""
        if self.augment == "rmg":
            return recursive_mosaic(images, level, release_order=self.release_order), labels
        if self.augment == "jigsaw":
            return jigsaw(images, 2 ** level, release_order=self.release_order), labels
        if self.augment == "snapmix":
            return self.snapmix(model, images, labels)
        if self.mixup is not None and self.pairing.can_mix(len(images)):
            mixed = images.clone()  # timm mixes in place
            lam = self.mixup._mix_batch(mixed)
            return mixed, mixup_target(labels, self.num_classes, lam, self.label_smoothing)
        return images, labels

    def snapmix(self, model: nn.Module, images: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SnapMix: a box of a partner image (its own size and place) resized into a box of each image;
        each label weighs by the share of its image's semantic map the mixed image keeps.

        Target ``w_a · onehot(y_a) + w_b · onehot(y_b)`` (the weights need not sum to 1), so the soft
        cross-entropy is SnapMix's ``w_a · CE(y_a) + w_b · CE(y_b)``. Where a map is all zero the box's
        area share stands in, as in the authors' code; their same-label adjustment is not applied.
        """
        height, width = images.shape[-2:]
        lam_a, lam_b = (float(torch.distributions.Beta(self.mix_alpha, self.mix_alpha).sample()) for _ in range(2))
        box_a, box_b = random_box(height, width, lam_a), random_box(height, width, lam_b)
        area_a = (box_a[1] - box_a[0]) * (box_a[3] - box_a[2])
        if area_a == 0 or (box_b[1] - box_b[0]) * (box_b[3] - box_b[2]) == 0:
            return images, labels
        partner = torch.randperm(len(images), device=images.device)
        maps = semantic_maps(model, images, labels)
        w_a = 1 - box_share(maps, box_a)
        w_b = box_share(maps[partner], box_b)
        kept = 1 - area_a / (height * width)
        w_a, w_b = torch.nan_to_num(w_a, nan=kept), torch.nan_to_num(w_b, nan=1 - kept)
        onehot = F.one_hot(labels, self.num_classes).float()
        return paste_box(images, images[partner], box_a, box_b), w_a[:, None] * onehot + w_b[:, None] * onehot[partner]

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 2:  # soft targets of cutmix / mixup
            return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def train_step(self, model: nn.Module, batch: dict, update: Callable[[torch.Tensor], float],
                   autocast: Callable) -> tuple[dict[str, float], torch.Tensor]:
        """``S + 1`` phases; returns each phase's loss by name with their mean as ``"loss"``, and the
        last phase's logits. The last phase back-propagates ``concat_loss_weight`` × its loss."""
        images, labels = batch["image"], batch["label"]
        losses = []
        for n in range(model.stages):
            loss = self.stage_loss(model, images, labels, n, autocast)
            losses.append(update(loss) if self.phases else loss)
        with autocast():
            logits = model.forward_all(images)[-1]
            concat = self.loss(logits, labels)
        if self.phases:
            update(self.concat_loss_weight * concat)
        else:
            update(torch.stack(losses).sum() + self.concat_loss_weight * concat)
            losses = [loss.item() for loss in losses]
        losses.append(concat.item())
        names = [f"stage{n + 1}" for n in range(model.stages)] + ["concat"]
        return {"loss": sum(losses) / len(losses), **dict(zip(names, losses))}, logits

    def stage_loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, n: int,
                   autocast: Callable) -> torch.Tensor:
        """Phase ``n`` (0-based, shallow to deep): stage ``n``'s loss on its input of level ``S − n``."""
        x, target = self.phase_input(model, images, labels, model.stages - n)
        with autocast():
            return self.loss(model.forward_all(x)[n], target)

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        outputs = model.forward_all(batch["image"])
        return {"concat": outputs[-1], "mix": torch.stack(outputs).sum(0)}


def semantic_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` non-negative maps of where each image's own class is seen, at the input size.

    SnapMix takes a CAM from a linear classifier; the multi-stage classifiers are MLPs, so this is the
    Grad-CAM of the deepest smooth-conv map for the label's concatenated-classifier logit. The
    gradient is taken with ``autograd.grad`` (no parameter's ``.grad`` is touched); nothing here is
    trained.
    """
    with torch.enable_grad():
        maps = model.smooth_maps(images.detach())
        logits = model.concat_classifier(torch.cat(model.pool(maps), 1))
        deepest = maps[-1]
        grad, = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), deepest)
    cam = F.relu((grad.mean((2, 3), keepdim=True) * deepest).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
