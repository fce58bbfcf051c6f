"""Contrastive temporal coding (Cui et al., ECCV 2022, "Discriminability-Transferability Trade-Off").

Supervised training over-compresses its input late in training: features become more discriminative
for the source classes and less transferable. CTC counters it in two stages (docs/methods/ctc.md):

* **Stage 1** (epochs ``< method.ctc_switch_epoch``): ``CE + α · L_inst``, where ``L_inst`` is the
  instance discrimination of Wu et al. (2018): the pooled backbone feature, embedded to ``ctc_dim``
  (linear, L2-normalised), must pick its own entry of a momentum memory bank over *all* training
  images among ``K`` entries drawn uniformly from it (NCE, noise distribution ``Pn = 1/N``). The
  optimiser's weight decay is multiplied by ``ctc_weight_decay_factor`` during this stage.
* **At the switch** a frozen deep copy of the model — the *temporal snapshot* — is kept (eval mode,
  no gradients, never in the optimiser). With ``ctc_refresh_bank`` both memory banks are filled with
  embeddings of the snapshot's features from one pass over the training images (eval transforms).
* **Stage 2**: ``CE + β · L_ctc``, the contrastive loss of CRD (Tian et al., 2020), whose code CTC's
  release builds on, between the current model and its snapshot: two embedding heads (current,
  snapshot), two memory banks; the current embedding of image ``i`` must pick the snapshot bank's
  entry ``i`` among ``K`` uniform draws, and the snapshot's embedding the current bank's entry ``i``;
  ``L_ctc`` is the sum of the two NCE terms. The snapshot's backbone gets no gradient; its head does
  (through the second term), as CRD's teacher embedding does.

NCE (``nce_loss``): scores ``P = exp(v·w / τ) / Z``; ``Z`` is estimated once, from the first batch a
bank sees (``Z = N · mean exp(v·w / τ)``), and kept, as in the released code (lemniscate / CRD).
Banks start uniform in ``±1/√(dim/3)`` (as CRD's) and are updated after each step:
``bank[i] ← normalise(m · bank[i] + (1 − m) · v_i)``. Everything that changes during training —
heads, banks, the ``Z`` constants, the snapshot — is this module's state and travels in ``last.pt``.

Not distributed-aware: under DDP each process would keep its own banks (no all-gather).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from fgvc.data.loader import make_dataset
from fgvc.errors import FgvcError
from fgvc.methods.base import Method
from fgvc.sections import MethodSection

if TYPE_CHECKING:
    from fgvc.config import Config

log = logging.getLogger(__name__)

EPS = 1e-7  # the released NCE criterion's guard in the denominators


def nce_loss(scores: torch.Tensor, num_data: int) -> torch.Tensor:
    """NCE of Wu et al. (2018) over ``scores [B, K+1]`` = ``P(i | v)`` (column 0 the positive).

    The positive is classified as data against ``K`` noise draws of probability ``Pn = 1/N``:
    ``−1/B Σ_b [log P₀/(P₀ + K·Pn) + Σ_k log K·Pn/(P_k + K·Pn)]``.
    """
    k = scores.shape[1] - 1
    noise = k / num_data  # K · Pn
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + EPS))
    negatives = torch.log(noise / (scores[:, 1:] + noise + EPS))
    return -(positive.sum() + negatives.sum()) / scores.shape[0]


def momentum_update(bank: torch.Tensor, index: torch.Tensor, embeddings: torch.Tensor, momentum: float) -> None:
    """``bank[i] ← normalise(m · bank[i] + (1 − m) · v_i)`` in place, for the batch's indices."""
    mixed = bank.index_select(0, index) * momentum + embeddings.detach().float() * (1 - momentum)
    bank.index_copy_(0, index, F.normalize(mixed, dim=1))


def switch_epoch(cfg: Config) -> int:
    """First stage-2 epoch (0-based): ``method.ctc_switch_epoch``, else two thirds of the epochs (paper: 200 of 300)."""
    given = cfg.method.ctc_switch_epoch
    return given if given is not None else max(1, round(2 * cfg.schedule.epochs / 3))


def init_bank(num_data: int, dim: int) -> torch.Tensor:
    std = 1.0 / math.sqrt(dim / 3)
    return torch.rand(num_data, dim).mul_(2 * std).add_(-std)


class CTCConfig(MethodSection):
    """``method.name=ctc``; the defaults: the paper's CIFAR-100 "transferability" setting of the release."""

    name: Literal["ctc"] = "ctc"
    ctc_alpha: float = Field(0.5, ge=0)  # stage 1: CE + alpha * instance discrimination (paper: 0.5 or 0.1)
    ctc_beta: float = Field(1.0, ge=0)  # stage 2: CE + beta * NCE against the snapshot
    ctc_instance_temperature: float = Field(0.1, gt=0)  # stage 1 tau (paper: 0.1 or 0.5)
    ctc_instance_momentum: float = Field(0.9, ge=0, lt=1)  # stage 1 memory-bank momentum
    ctc_temperature: float = Field(0.1, gt=0)  # stage 2 tau (paper: 0.1 or 0.4)
    ctc_momentum: float = Field(0.9, ge=0, lt=1)  # stage 2 memory-bank momentum
    ctc_negatives: int = Field(16384, ge=1)  # K uniform draws per sample (at most N_train - 1)
    ctc_dim: int = Field(128, ge=1)  # embedding width
    # first stage-2 epoch (0-based); None: 2/3 of schedule.epochs
    ctc_switch_epoch: int | None = Field(None, ge=1)
    ctc_refresh_bank: bool = True  # at the switch, fill the banks with the snapshot's embeddings
    ctc_weight_decay_factor: float = Field(2.0, ge=0)  # optim.weight_decay x this in stage 1

    def check(self, cfg: Config) -> None:
        if cfg.model.fusion.name != "none":
            raise ValueError("method.name=ctc embeds the pooled backbone feature of an image-only model: set "
                             "model.head=linear and model.fusion.name=none")
        if cfg.train.mixup_alpha > 0 or cfg.train.cutmix_alpha > 0:
            raise ValueError("method.name=ctc contrasts each image with its own memory-bank entry, which a mixed "
                             "image does not have: set train.mixup_alpha=0 and train.cutmix_alpha=0")


class CTC(Method, nn.Module):
    """The method and its state: embedding heads (trained, ``parameters()``), memory banks and the
    NCE constants (buffers), and, from the switch on, the frozen snapshot (a submodule, no gradients).

    Built without ``model``/``num_data`` (evaluation, prediction) it holds nothing and only predicts.
    It calls the model's ``backbone`` and ``head`` itself (no routed forward): under DDP it refuses to
    run anyway, its banks being per process.
    """

    section = CTCConfig
    forwards = ()

    @classmethod
    def card(cls, config: dict) -> str:
        return "contrastive temporal coding (CTC) on a linear classifier"

    def __init__(self, cfg: Config, num_classes: int, model: nn.Module | None = None,
                 num_data: int | None = None):
        super().__init__()
        m = cfg.method
        self.data_cfg = cfg.data
        self.label_smoothing = cfg.train.label_smoothing
        self.alpha, self.beta = m.ctc_alpha, m.ctc_beta
        self.instance_temperature, self.instance_momentum = m.ctc_instance_temperature, m.ctc_instance_momentum
        self.temperature, self.momentum = m.ctc_temperature, m.ctc_momentum
        self.switch_epoch = switch_epoch(cfg)
        self.refresh_bank = m.ctc_refresh_bank
        self.weight_decay_factor = m.ctc_weight_decay_factor
        self.snapshot: nn.Module | None = None
        self._pending_snapshot: dict | None = None
        if model is None or num_data is None:
            return
        self.num_data = num_data
        self.negatives = min(m.ctc_negatives, num_data - 1)
        if self.negatives < m.ctc_negatives:
            log.info("method.ctc_negatives=%d but the training split has %d images: %d negatives per sample",
                     m.ctc_negatives, num_data, self.negatives)
        features = model.backbone.num_features
        self.embed = nn.Linear(features, m.ctc_dim)  # stage 1, and the current model's head in stage 2
        self.embed_snapshot = nn.Linear(features, m.ctc_dim)  # stage 2: the snapshot's head
        self.register_buffer("bank", init_bank(num_data, m.ctc_dim))  # current model's embeddings
        self.register_buffer("bank_snapshot", init_bank(num_data, m.ctc_dim))  # the snapshot's
        # NCE normalisation constants, -1 until estimated: stage 1, stage 2 (current, snapshot banks)
        self.register_buffer("z", torch.full((3,), -1.0))

    # --- stages ------------------------------------------------------------------------------
    def on_epoch_start(self, model: nn.Module, epoch: int, optimizer: torch.optim.Optimizer,
                       train_loader: DataLoader) -> None:
        """Stage of ``epoch``: weight decay for it, and the snapshot taken (or restored) once stage 2 starts."""
        stage_one = epoch < self.switch_epoch
        for group in optimizer.param_groups:
            base = group.setdefault("base_weight_decay", group["weight_decay"])
            group["weight_decay"] = base * (self.weight_decay_factor if stage_one else 1.0)
        if self._pending_snapshot is not None:  # resumed in stage 2: rebuild the snapshot
            self.set_snapshot(model)
            self.snapshot.load_state_dict(self._pending_snapshot)
            self._pending_snapshot = None
        elif not stage_one and self.snapshot is None:
            self.set_snapshot(model)
            log.info("CTC: stage 2 from epoch %d: temporal snapshot taken%s", epoch + 1,
                     ", memory banks refreshed with it" if self.refresh_bank else "")
            if self.refresh_bank:
                self.refresh(train_loader)

    def set_snapshot(self, model: nn.Module) -> None:
        snapshot = copy.deepcopy(model).eval()
        for p in snapshot.parameters():
            p.requires_grad_(False)
            p.grad = None  # deepcopy carries the last step's gradients along
        self.snapshot = snapshot

    def train(self, mode: bool = True) -> CTC:
        super().train(mode)
        if self.snapshot is not None:
            self.snapshot.eval()  # always: BatchNorm statistics of the snapshot stay as they were
        return self

    @torch.no_grad()
    def refresh(self, train_loader: DataLoader) -> None:
        """Both banks ← the snapshot's features through each head, every training image (eval transforms)."""
        samples = getattr(train_loader.dataset, "samples", None)
        if samples is None:  # a streamed dataset (shards) has no list of records to run over
            raise FgvcError(f"method.ctc_refresh_bank=true needs the training records in a list; data.format="
                            f"{self.data_cfg.format} streams them: set method.ctc_refresh_bank=false")
        dataset = make_dataset(self.data_cfg, samples, train=False)
        loader = DataLoader(dataset, batch_size=train_loader.batch_size, shuffle=False,
                            num_workers=train_loader.num_workers, collate_fn=train_loader.collate_fn)
        device = self.bank.device
        for batch in loader:
            if "image" not in batch:
                continue
            features = self.snapshot.backbone(batch["image"].to(device)).float()
            index = batch["index"].to(device)
            self.bank.index_copy_(0, index, F.normalize(self.embed(features), dim=1))
            self.bank_snapshot.index_copy_(0, index, F.normalize(self.embed_snapshot(features), dim=1))

    # --- losses ------------------------------------------------------------------------------
    def contrast(self, embeddings: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, temperature: float,
                 slot: int) -> torch.Tensor:
        """NCE of ``embeddings`` against ``bank`` (positive: each sample's own entry, then K uniform draws)."""
        draws = torch.randint(self.num_data, (len(index), self.negatives + 1)).to(index.device)
        draws[:, 0] = index
        weights = bank[draws]  # [B, K+1, d], a copy: the bank may change in place afterwards
        scores = torch.exp(torch.bmm(weights, embeddings.float().unsqueeze(2)).squeeze(2) / temperature)
        if self.z[slot] < 0:
            self.z[slot] = scores.detach().mean() * self.num_data
            log.info("CTC: NCE normalisation constant Z[%d] = %.1f (from the first batch)", slot, self.z[slot])
        return nce_loss(scores / float(self.z[slot]), self.num_data)  # a constant, not a graph node

    def training_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, index = batch["image"], batch["label"], batch["index"]
        features = model.backbone(images)
        logits = model.head(features)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        current = F.normalize(self.embed(features).float(), dim=1)
        if self.snapshot is None:  # stage 1: instance discrimination
            loss = loss + self.alpha * self.contrast(current, self.bank, index, self.instance_temperature, 0)
            with torch.no_grad():
                momentum_update(self.bank, index, current, self.instance_momentum)
            return loss, logits
        with torch.no_grad():
            snapshot_features = self.snapshot.backbone(images)
        past = F.normalize(self.embed_snapshot(snapshot_features).float(), dim=1)
        contrastive = (self.contrast(current, self.bank_snapshot, index, self.temperature, 1)
                       + self.contrast(past, self.bank, index, self.temperature, 2))
        with torch.no_grad():
            momentum_update(self.bank, index, current, self.momentum)
            momentum_update(self.bank_snapshot, index, past, self.momentum)
        return loss + self.beta * contrastive, logits

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(batch["image"], batch["meta"])

    # --- checkpoints -------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """The snapshot's weights wait for ``on_epoch_start`` (which has the model to copy)."""
        own = {k: v for k, v in state_dict.items() if not k.startswith("snapshot.")}
        snapshot = {k.removeprefix("snapshot."): v for k, v in state_dict.items() if k.startswith("snapshot.")}
        self._pending_snapshot = snapshot or None
        return super().load_state_dict(own, strict=strict, assign=assign)
