"""Joint training of the erudite model (CVPR 2023): L_all, and meta-learned spatial attention.

``L_all = CE(G(F), y) + 1/N Σ_n CE(G_n(f*_n), y^n)``: the joint classifier on every sample, each
dataset's auxiliary classifier on that dataset's samples only (labels shifted to its own range).

With ``method.meta=maml`` every mini-batch makes two updates. Stage I: everything but the attention
parameters θ with ``L_all``. Stage II: θ alone with
``L_meta = L_all(θ; meta-train) + L_all(θ'; meta-test)``, ``θ' = θ − α ∇θ L_all(θ; meta-train)``,
where one randomly chosen dataset's samples are meta-test and the rest meta-train; the gradient
flows through θ' (second order). θ sits after the backbone, so stage II runs the backbone once
without a graph and adapts only the head, through ``torch.func.functional_call`` over θ — no copy of
the model (the released code clones and adapts the whole network). ``method.meta=pcgrad`` replaces
stage II by PCGrad over the datasets' ``L_all`` gradients on θ; ``none`` is one update with ``L_all``
(Baseline, Baseline+, Baseline++).

Ours_PMG (``model.erudite.multi_stage``): PMG's progressive phases come first — stage ``n``'s classifier
on a ``2^(S−n+1)`` jigsaw (``method.augment``), one update each — then the stages above on the whole
image, the erudite head taking the place of PMG's last phase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.func import functional_call

from fgvc.data.joint import dataset_index
from fgvc.methods.base import Method
from fgvc.methods.progressive import Progressive, ProgressiveConfig

if TYPE_CHECKING:
    from fgvc.config import Config


def joint_loss(outputs: dict, labels: torch.Tensor, groups: list[int], label_smoothing: float = 0.0) -> torch.Tensor:
    """``L_all``: joint cross-entropy plus the mean auxiliary loss over the datasets present."""
    loss = F.cross_entropy(outputs["logits"].float(), labels, label_smoothing=label_smoothing)
    if "aux" not in outputs:
        return loss
    index, offset = dataset_index(labels, groups)
    aux = [F.cross_entropy(logits[index == n].float(), (labels - offset)[index == n], label_smoothing=label_smoothing)
           for n, logits in enumerate(outputs["aux"]) if (index == n).any()]
    return loss + torch.stack(aux).mean()


def pcgrad(grads: list[list[torch.Tensor]], generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """PCGrad (Yu et al., 2020): each task's gradient loses its component along every other task's
    gradient it conflicts with (negative dot product), in random order; the projections are summed."""
    flat = [torch.cat([g.reshape(-1) for g in task]) for task in grads]
    projected = []
    for i, g in enumerate(flat):
        g = g.clone()
        for j in torch.randperm(len(flat), generator=generator).tolist():
            dot = torch.dot(g, flat[j])
            if j != i and dot < 0:
                g -= dot / flat[j].pow(2).sum().clamp_min(1e-12) * flat[j]
        projected.append(g)
    total = torch.stack(projected).sum(0)
    shapes = [g.shape for g in grads[0]]
    return [t.reshape(s) for t, s in zip(torch.split(total, [s.numel() for s in shapes]), shapes)]


class EruditeMethodConfig(ProgressiveConfig):
    """``method.name=erudite``: L_all on ``model.head=erudite`` (joint data), optionally meta-learned
    attention. The keys of ``progressive`` apply to Ours_PMG's phases (``model.erudite.multi_stage``)."""

    name: Literal["erudite"] = "erudite"  # type: ignore[assignment]
    heads: ClassVar[tuple[str, ...]] = ("erudite",)
    # how the attention parameters learn. maml: stage II with the meta loss (Ours); pcgrad: stage II with
    # PCGrad over the datasets (Ours_PCGrad); none: with everything else
    meta: Literal["maml", "pcgrad", "none"] = "maml"
    meta_lr: float = Field(0.01, gt=0)  # the inner step α of θ' = θ - α ∇θ L_all(meta-train)

    def check(self, cfg: Config) -> None:
        if cfg.model.erudite.multi_stage and self.augment == "snapmix":
            raise ValueError("model.erudite.multi_stage (Ours_PMG) takes neither model.erudite.hierarchical nor "
                             "method.augment=snapmix (its semantic maps need PMG's concatenated classifier)")


class Erudite(Method):
    section = EruditeMethodConfig
    forwards = ("forward_train", "forward_all")

    @classmethod
    def card(cls, config: dict) -> str:
        return "the erudite model: one network over several datasets' classes"

    @classmethod
    def unused_parameters(cls, section: EruditeMethodConfig) -> bool:
        """Its variants (hierarchical, ``data.joint_target=dataset``, Ours_PMG's phases) do not all reach
        every parameter in each backward pass."""
        return True

    def __init__(self, cfg: Config, num_classes: int, model: nn.Module | None = None,
                 num_train: int | None = None):
        self.meta = cfg.method.meta
        self.meta_lr = cfg.method.meta_lr
        self.label_smoothing = cfg.train.label_smoothing
        self.pmg = Progressive(cfg, num_classes) if cfg.model.erudite.multi_stage else None

    def theta(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The attention parameters, by their names inside ``model.head``."""
        params = dict(model.head.named_parameters())
        return {name: params[name] for name in model.head.meta_parameter_names()}

    def train_step(self, model: nn.Module, batch: dict, update: Callable, autocast: Callable) -> tuple[float, torch.Tensor]:
        images, labels = batch["image"], batch["label"]
        groups = model.head.groups
        phases = 0.0
        if self.pmg is not None:  # Ours_PMG: PMG's granularity phases first
            phases = sum(update(self.pmg.stage_loss(model, images, labels, n, autocast)) for n in range(model.stages))
        with autocast():
            outputs = model.forward_train(images)
            loss = joint_loss(outputs, labels, groups, self.label_smoothing)
        theta = self.theta(model)
        if self.meta == "none" or not theta:
            return phases + update(loss), outputs["logits"]
        value = phases + update(loss, skip=list(theta.values()))  # stage I: θ untouched
        with torch.no_grad(), autocast():
            fmap = model.features(images)  # θ comes after the backbone: no graph needed below it
        if self.meta == "maml":
            with autocast():
                meta_loss = self.meta_loss(model, fmap, labels, theta, groups)
            if meta_loss is not None:
                update(meta_loss, only=list(theta.values()))
        else:
            update(loss.detach(), only=list(theta.values()), grads=self.pcgrad_grads(model, fmap, labels, theta, groups))
        return value, outputs["logits"]

    def meta_loss(self, model: nn.Module, fmap: torch.Tensor, labels: torch.Tensor, theta: dict,
                  groups: list[int]) -> torch.Tensor | None:
        """``L_all(θ; meta-train) + L_all(θ'; meta-test)``, differentiable in θ through θ'."""
        index, _ = dataset_index(labels, groups)
        present = index.unique()
        if len(present) < 2:  # nothing to hold out
            return None
        test = present[torch.randint(len(present), (1,)).item()]
        train_mask, test_mask = index != test, index == test
        train_loss = joint_loss(model.head(fmap[train_mask]), labels[train_mask], groups, self.label_smoothing)
        grads = torch.autograd.grad(train_loss, list(theta.values()), create_graph=True)
        adapted = {name: p - self.meta_lr * g for (name, p), g in zip(theta.items(), grads)}
        test_out = functional_call(model.head, adapted, (fmap[test_mask],))
        return train_loss + joint_loss(test_out, labels[test_mask], groups, self.label_smoothing)

    def pcgrad_grads(self, model: nn.Module, fmap: torch.Tensor, labels: torch.Tensor, theta: dict,
                     groups: list[int]) -> list[torch.Tensor]:
        index, _ = dataset_index(labels, groups)
        per_dataset = []
        for n in index.unique().tolist():
            mask = index == n
            loss = joint_loss(model.head(fmap[mask]), labels[mask], groups, self.label_smoothing)
            per_dataset.append(list(torch.autograd.grad(loss, list(theta.values()))))
        return pcgrad(per_dataset)

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.pmg is None:
            return model(batch["image"])
        outputs = model.forward_all(batch["image"])  # Ours_PMG: the joint head, and PMG's P_mix rule
        return {"joint": outputs[-1], "mix": torch.stack(outputs).sum(0)}
