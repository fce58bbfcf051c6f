"""PriorsNet: a geo-temporal prior trained on locations alone, multiplied into an image model at test time.

Mac Aodha, Cole and Perona, "Presence-Only Geographical Priors for Fine-Grained Image Classification"
(ICCV 2019), used as a baseline by Dynamic MLP (docs/methods/dynamic_mlp.md). The prior is the
``LocationEncoder`` whose output is one logit per class, ``s_c(loc)``, read as
``P(c present at loc) = σ(s_c(loc))``. It never sees an image, so it trains on the training records' metadata in seconds, and at test time

    p(y | x, loc) ∝ p(y | x) · σ(s_y(loc))

with a separately trained image-only model (samples without metadata keep the image prediction).

Details follow the authors' code (github.com/macaodha/geo_prior, ``losses.py`` / ``train_geo_net.py``
/ ``run_evaluation.py``), "full_loss" without the photographer term:

- loss: see ``presence_only_loss``;
- optimiser: Adam, lr 5e-4 decayed ×0.98 per epoch (``lr * 0.98**epoch``), no weight decay, batch 1024,
  30 epochs, width 256, 4 residual layers with dropout 0.5;
- sampling: class-balanced by default — each epoch draws at most 100 samples per class without
  replacement (their ``BalancedSampler``); ``balance="instance"`` shuffles every sample once instead;
- negatives: one random location (with a random date) per positive, drawn afresh at every step. The
  authors' "spherical" sampler is not uniform on the sphere; we draw uniformly on the sphere as the
  Dynamic MLP paper describes (``random_points``).
- inputs: our own encoding (``fgvc.data.metadata``, docs/formats.md), not theirs, so that the prior reads
  the same features as the fusion models.

GeoNet-style post-processing (a fusion head fine-tuned on a frozen image-only model) needs no method
of its own: start the fusion model's backbone from the image-only checkpoint — by config,
``model.pretrained=<run>/checkpoints/best.pt``, or in code with ``load_image_backbone`` (which also
checks that every backbone tensor is found) — and train with ``schedule.freeze_backbone_epochs =
schedule.epochs``: the trainer then keeps the backbone's weights and BatchNorm statistics fixed and
trains only the new layers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm import tqdm

from fgvc.checkpoint import load_checkpoint, save_atomic
from fgvc.data.index import as_index
from fgvc.data.metadata import USES, metadata_dim
from fgvc.data.records import Sample
from fgvc.errors import DataError, FgvcError
from fgvc.methods.base import Method
from fgvc.models.fusion import LocationEncoder
from fgvc.sections import MethodSection

if TYPE_CHECKING:
    from fgvc.config import Config
    from fgvc.data.records import Splits

log = logging.getLogger(__name__)

# The authors' defaults (train_geo_net.py).
LR, LR_DECAY, EPOCHS, BATCH_SIZE, MAX_PER_CLASS, EPS = 5e-4, 0.98, 30, 1024, 100, 1e-5


# ----------------------------------------------------------------------------------------- the loss


def _log_plus_eps(log_p: torch.Tensor, eps: float) -> torch.Tensor:
    """``log(p + eps)`` computed from ``log p``: stable for any logit, and exactly the authors' clip."""
    if eps <= 0:
        return log_p
    return torch.logaddexp(log_p, log_p.new_tensor(math.log(eps)))


def presence_only_loss(logits_pos: torch.Tensor, logits_rand: torch.Tensor, labels: torch.Tensor,
                       pos_weight: float | None = None, eps: float = EPS) -> torch.Tensor:
    """The presence-only "full loss" of Mac Aodha et al. (2019), as in their ``embedding_loss``.

    With ``p = σ(logits_pos)`` at the observed locations and ``q = σ(logits_rand)`` at random ones::

        L_pos[i, c] = -log(1 - p[i, c] + eps)            for c != y_i
        L_pos[i, y_i] = -λ · log(p[i, y_i] + eps)         (replaces, not adds to, the negative term)
        L_bg[j, c]  = -log(1 - q[j, c] + eps)             for every class
        loss = mean(L_pos) + mean(L_bg)                   (each a mean over all B × C entries)

    λ = ``pos_weight`` defaults to the number of classes, which balances the single positive against
    the C − 1 negatives of its row. ``eps`` = 1e-5 is the authors' constant: it bounds each term by
    ``-log(eps)`` ≈ 11.5 and stops pushing logits that are already saturated; ``eps=0`` gives the
    plain log-likelihood. ``log σ(s)`` and ``log(1 − σ(s)) = log σ(−s)`` come from ``F.logsigmoid``,
    so large logits never produce ``log(0)``.
    """
    if logits_pos.ndim != 2 or logits_rand.ndim != 2 or logits_pos.shape[1] != logits_rand.shape[1]:
        raise ValueError(f"logits must be [B, C] with the same C, got {tuple(logits_pos.shape)} "
                         f"and {tuple(logits_rand.shape)}")
    logits_pos, logits_rand = logits_pos.float(), logits_rand.float()
    weight = float(logits_pos.shape[1] if pos_weight is None else pos_weight)
    labels = labels.long()[:, None]
    loss_pos = -_log_plus_eps(F.logsigmoid(-logits_pos), eps)
    target = -_log_plus_eps(F.logsigmoid(logits_pos.gather(1, labels)), eps)
    loss_pos = loss_pos.scatter(1, labels, weight * target)
    loss_bg = -_log_plus_eps(F.logsigmoid(-logits_rand), eps)
    return loss_pos.mean() + loss_bg.mean()


# ------------------------------------------------------------------------------- random negatives


def _components(use: str | Iterable[str]) -> tuple[bool, bool]:
    metadata_dim(use)  # validates the names
    names = {use} if isinstance(use, str) else set(use)
    return "geo" in names, "temporal" in names


def random_points(n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """``(lat, lon, date)`` float64 ``[n]``: uniform on the sphere, date a uniform fraction of the year.

    Uniform on the sphere means uniform in ``sin(lat)``, i.e. ``lat = arcsin(2u − 1)``; uniform
    latitudes would crowd the poles, which cover little of the Earth.
    """
    u = torch.rand(3, n, generator=generator, dtype=torch.float64)
    lat = torch.rad2deg(torch.asin(2 * u[0] - 1))
    lon = 360 * u[1] - 180
    return lat, lon, u[2]


def encode_points(lat: torch.Tensor, lon: torch.Tensor, date: torch.Tensor,
                  use: str | Iterable[str] = USES) -> torch.Tensor:
    """Vectorised ``encode_metadata`` for valid values: degrees and year fractions in, float32 ``[n, dim]``.

    Same scaling (lat/90, lon/180, 2·date − 1), order (lat, lon, date) and ``[sin(πx)…, cos(πx)…]``.
    """
    geo, temporal = _components(use)
    parts = ([lat / 90.0, lon / 180.0] if geo else []) + ([2 * date - 1] if temporal else [])
    x = torch.stack([p.double() for p in parts], dim=1)
    return torch.cat([torch.sin(math.pi * x), torch.cos(math.pi * x)], dim=1).float()


def random_locations(n: int, generator: torch.Generator | None = None,
                     use: str | Iterable[str] = USES) -> torch.Tensor:
    """``n`` encoded random locations (with random dates when ``use`` has "temporal"): the negatives."""
    return encode_points(*random_points(n, generator), use=use)


# ------------------------------------------------------------------------------------------ the model


_USE_OF_DIM = {metadata_dim(u): u for u in (USES, ("geo",), ("temporal",))}


class PriorsNet(nn.Module):
    """``LocationEncoder(meta_in → width → num_classes)``: one presence logit per class.

    ``use`` (which metadata it reads) follows from ``meta_in``: 6 both, 4 geography, 2 date.
    ``classes`` and ``info`` (training settings and counts) travel with its checkpoint.
    """

    def __init__(self, meta_in: int, num_classes: int, width: int = 256, n_res: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        if meta_in not in _USE_OF_DIM:
            raise ValueError(f"meta_in must be an encoded metadata width {sorted(_USE_OF_DIM)}, not {meta_in}")
        self.settings = {"meta_in": meta_in, "num_classes": num_classes, "width": width, "n_res": n_res,
                         "dropout": dropout}
        self.encoder = LocationEncoder(in_dim=meta_in, width=width, out_dim=num_classes, n_res=n_res,
                                       dropout=dropout)
        self.classes: list[str] | None = None
        self.info: dict = {}

    @property
    def use(self) -> tuple[str, ...]:
        return _USE_OF_DIM[self.settings["meta_in"]]

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.encoder(meta)


def save_priors(model: PriorsNet, path: str | Path) -> None:
    """Atomic checkpoint with everything needed to rebuild the model."""
    save_atomic({"kind": "priors_net", "settings": dict(model.settings), "model": model.state_dict(),
                 "use": list(model.use), "classes": model.classes, "info": model.info}, path)


def load_priors(path: str | Path) -> PriorsNet:
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "priors_net":
        raise FgvcError(f"{path}: not a PriorsNet checkpoint (written by fgvc.methods.priors.save_priors)")
    model = PriorsNet(**ckpt["settings"])
    model.load_state_dict(ckpt["model"])
    model.classes, model.info = ckpt.get("classes"), ckpt.get("info") or {}
    return model.eval()


@torch.no_grad()
def prior_logits(model: PriorsNet, meta: torch.Tensor | np.ndarray, batch_size: int = 8192,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``s(loc)`` ``[N, C]`` (float32, CPU) for encoded metadata ``[N, meta_in]``, in eval mode."""
    meta = torch.as_tensor(meta, dtype=torch.float32)
    model.eval().to(device)
    out = [model(chunk.to(device)).float().cpu() for chunk in meta.split(batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.settings["num_classes"])


# ---------------------------------------------------------------------------------------- training


def _epoch_order(labels: np.ndarray, balance: str, max_per_class: int | None,
                 generator: torch.Generator) -> torch.Tensor:
    """Indices of one epoch: all samples shuffled, or ≤ ``max_per_class`` per class (the authors' sampler)."""
    if balance == "instance" or max_per_class is None:
        return torch.randperm(len(labels), generator=generator)
    picked = []
    for c in np.unique(labels):
        members = torch.from_numpy(np.flatnonzero(labels == c))
        picked.append(members[torch.randperm(len(members), generator=generator)[:max_per_class]])
    chosen = torch.cat(picked)
    return chosen[torch.randperm(len(chosen), generator=generator)]


def train_priors(samples: Sequence[Sample], num_classes: int, use: str | Iterable[str] = USES, *,
                 epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, lr: float = LR,
                 lr_decay: float = LR_DECAY, seed: int = 0, balance: str = "class",
                 max_per_class: int | None = MAX_PER_CLASS, width: int = 256, n_res: int = 4,
                 dropout: float = 0.5, pos_weight: float | None = None, eps: float = EPS,
                 on_invalid: str = "missing", classes: Sequence[str] | None = None,
                 device: torch.device | str = "cpu", progress: bool = True) -> PriorsNet:
    """Train a PriorsNet on the metadata of ``samples`` (the training split; no image is read).

    Samples whose used metadata is missing (or invalid, with ``on_invalid="missing"``) carry no
    location and are left out; how many is logged and kept in ``model.info["n_missing"]``.
    Deterministic for a ``seed`` on CPU: initialisation, sampling, dropout and the random negatives
    all draw from generators seeded here, and the caller's global RNG state is left untouched.
    """
    if balance not in ("instance", "class"):
        raise ValueError(f"balance must be 'instance' or 'class', not {balance!r}")
    use = (use,) if isinstance(use, str) else tuple(use)
    samples = as_index(samples)
    meta, n_missing = samples.encode(use, on_invalid)
    labels = samples.labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(f"label {labels[bad[0]]} of sample {samples[bad[0]].path!r} is outside "
                        f"[0, {num_classes})")
    keep = meta.any(axis=1)
    meta, labels = meta[keep], labels[keep]
    if n_missing:
        log.info("priors: %d of %d training samples have no usable %s metadata and are left out",
                 n_missing, len(samples), "+".join(use))
    if not len(labels):
        raise FgvcError("priors: no training sample has usable metadata")

    device = torch.device(device)
    x_all, y_all = torch.from_numpy(meta).to(device), torch.from_numpy(labels).to(device)
    order_gen = torch.Generator().manual_seed(seed)
    rand_gen = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = PriorsNet(metadata_dim(use), num_classes, width, n_res, dropout).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        bar = tqdm(range(epochs), desc="priors", leave=False, dynamic_ncols=True,
                   disable=None if progress else True)
        for epoch in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_decay ** epoch
            total, seen = 0.0, 0
            for idx in _epoch_order(labels, balance, max_per_class, order_gen).split(batch_size):
                idx = idx.to(device)
                rand = random_locations(len(idx), rand_gen, use).to(device)
                logits = model(torch.cat([x_all[idx], rand]))
                loss = presence_only_loss(logits[:len(idx)], logits[len(idx):], y_all[idx], pos_weight, eps)
                if not torch.isfinite(loss):
                    raise FgvcError(f"priors: non-finite loss at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, seen = total + loss.item() * len(idx), seen + len(idx)
            losses.append(total / seen)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    model.classes = list(classes) if classes is not None else None
    model.info = {"n_train": len(labels), "n_missing": int(n_missing), "epochs": epochs,
                  "batch_size": batch_size, "lr": lr, "lr_decay": lr_decay, "balance": balance,
                  "max_per_class": max_per_class, "pos_weight": pos_weight, "eps": eps, "seed": seed,
                  "losses": losses}
    log.info("priors: trained on %d samples, %d epochs, final loss %.4f", len(labels), epochs, losses[-1])
    return model


# ----------------------------------------------------------------------------------------- testing


def combine_with_image(image_logits: torch.Tensor, prior_logits: torch.Tensor,
                       valid: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of ``p(y|x,loc) ∝ softmax(image_logits)_y · σ(s_y(loc))``, renormalised.

    Rows with ``valid`` False (no metadata) get the image log-probabilities alone, as in the
    authors' evaluation. Ranking (top-k) is the same as the unnormalised product's.
    """
    log_image = F.log_softmax(image_logits.float(), dim=1)
    log_prior = F.logsigmoid(prior_logits.float()) * valid.to(log_image.device)[:, None].float()
    return F.log_softmax(log_image + log_prior, dim=1)


# --------------------------------------------------------------------------------- the method


class PriorsConfig(MethodSection):
    """``method.name=priors``: the PriorsNet baseline; trains no image model (PriorsNet recipe of the
    geo_prior code: Adam 5e-4, x0.98 per epoch)."""

    name: Literal["priors"] = "priors"
    image_checkpoint: str | None = None  # the image-only model (best.pt) combined with the prior at test time
    priors_epochs: int = Field(EPOCHS, ge=1)
    priors_batch_size: int = Field(BATCH_SIZE, ge=1)
    priors_lr: float = Field(LR, gt=0)
    priors_balance: Literal["class", "instance"] = "class"  # class: at most 100 samples per class per epoch

    def check(self, cfg: Config) -> None:
        if not (self.image_checkpoint and cfg.data.metadata):
            raise ValueError("method.name=priors needs method.image_checkpoint (an image-only best.pt) "
                             "and data.metadata")


class Priors(Method):
    """The run: ``train_priors`` on the training records' metadata, then the image-only checkpoint's
    predictions multiplied by the prior (``combine_with_image``) on val and test."""

    section = PriorsConfig
    trains_model = False

    def __init__(self, cfg: Config, num_classes: int, model: nn.Module | None = None,
                 num_train: int | None = None):
        self.cfg = cfg
        self.image_checkpoint = getattr(cfg.method, "image_checkpoint", None)
        self.prior: PriorsNet | None = None

    def base_checkpoint(self) -> str:
        return self.image_checkpoint

    def fit(self, splits: Splits, out_dir: str | Path, progress: bool = True) -> dict:
        cfg, m = self.cfg, self.cfg.method
        self.prior = train_priors(splits.train, len(splits.classes), tuple(cfg.data.metadata),
                                  epochs=m.priors_epochs, batch_size=m.priors_batch_size, lr=m.priors_lr,
                                  seed=cfg.seed, balance=m.priors_balance, classes=splits.classes,
                                  progress=progress)
        save_priors(self.prior, Path(out_dir) / "priors.pt")
        return {"model": f"PriorsNet + {self.image_checkpoint}", "epochs": m.priors_epochs,
                "params_m": sum(p.numel() for p in self.prior.parameters()) / 1e6}

    def check_classes(self, classes: Sequence[str], dataset: str) -> None:
        names = self.prior.classes
        if names and list(names) != list(classes):
            raise FgvcError(f"prior was trained on {len(names)} other classes, not the {len(classes)} "
                            f"classes of '{dataset}'")
        if self.prior.settings["num_classes"] != len(classes):
            raise FgvcError(f"prior has {self.prior.settings['num_classes']} classes, "
                            f"the dataset {len(classes)}")

    def adjust(self, image_logits: torch.Tensor, samples: Sequence[Sample], index: torch.Tensor,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
        """Samples without the metadata the prior reads keep the image prediction."""
        meta, _ = as_index(samples).encode(self.prior.use, self.cfg.data.bad_metadata)
        meta = torch.from_numpy(meta)[index]
        valid = meta.any(dim=1)
        combined = combine_with_image(image_logits, prior_logits(self.prior, meta, device=device), valid)
        return combined, int((~valid).sum())


# ------------------------------------------------------------------------------ GeoNet-style recipe


def load_image_backbone(fusion_model: nn.Module, image_checkpoint: str | Path | dict) -> int:
    """Copy every ``backbone.*`` tensor of an fgvc image-only checkpoint into ``fusion_model``.

    Returns how many tensors were copied (weights and BatchNorm buffers). Every backbone tensor of
    the fusion model must be found with the same shape — a partial copy would silently mix a trained
    and a random backbone — otherwise ``FgvcError`` names the first mismatches. Non-backbone tensors
    (the image head, the fusion head) are left as they are. Followed by training with
    ``schedule.freeze_backbone_epochs = schedule.epochs``, this is GeoNet-style post-processing.
    """
    ckpt = image_checkpoint if isinstance(image_checkpoint, dict) else load_checkpoint(image_checkpoint)
    state = {k.removeprefix("module."): v for k, v in ckpt.get("model", ckpt).items()}
    source = {k: v for k, v in state.items() if k.startswith("backbone.")}
    own = {k: v for k, v in fusion_model.state_dict().items() if k.startswith("backbone.")}
    if not own:
        raise FgvcError("the model has no 'backbone' submodule to load into")
    missing = sorted(k for k in own if k not in source)
    mismatched = sorted(k for k in own if k in source and source[k].shape != own[k].shape)
    if missing or mismatched:
        where = "" if isinstance(image_checkpoint, dict) else f"{image_checkpoint}: "
        raise FgvcError(f"{where}backbone does not match the model's ({len(missing)} tensors missing, "
                        f"e.g. {missing[:3]}; {len(mismatched)} of another shape, e.g. {mismatched[:3]})")
    fusion_model.load_state_dict({k: source[k] for k in own}, strict=False)
    log.info("backbone: copied %d tensors from the image-only checkpoint", len(own))
    return len(own)
