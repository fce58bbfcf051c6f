"""The training loop: reads top to bottom like torchvision's classification reference.

``train(cfg)`` builds data, model, method, optimiser and schedule, resumes if asked, runs the epochs
(validation after each, best checkpoint chosen on validation only), then evaluates the best
checkpoint on the test split and writes the report. Checkpoints hold everything a resumed run needs
to continue bit-identically on CPU in deterministic mode: model, optimiser, scheduler, scaler, epoch
and position inside it, and the Python/NumPy/torch RNG states.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fgvc.checkpoint import load_checkpoint, save_atomic
from fgvc.config import Config
from fgvc.data.loader import make_dataset, make_loader, set_epoch
from fgvc.data.occurrences import occurrence_table
from fgvc.data.shards import ShardIndex
from fgvc.data.records import Splits
from fgvc.data.splits import prepare_splits
from fgvc.engine import distributed
from fgvc.engine.checkpoint import rng_state, set_rng_state
from fgvc.engine.evaluate import evaluate, move
from fgvc.engine.metrics_log import MetricsLog
from fgvc.engine.schedule import build_scheduler
from fgvc.errors import FgvcError
from fgvc.methods import build_method, method_class
from fgvc.models import build_model

log = logging.getLogger(__name__)


class NonFiniteLossError(FgvcError):
    pass


@dataclass
class TrainState:
    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # optimiser steps already taken in this epoch
    position: int = 0  # samples of this epoch already drawn, by all ranks together (skipped ones included)
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    # running sums of the current epoch, so a resumed epoch reports the same figures
    loss_sum: float = 0.0
    part_sums: dict[str, float] = field(default_factory=dict)  # a multi-phase method's losses by name
    correct: int = 0
    seen: int = 0
    skipped: int = 0

    def start_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = self.position = self.correct = self.seen = self.skipped = 0
        self.loss_sum = 0.0
        self.part_sums = {}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # "tpu", "cuda:abc", ""
        raise FgvcError(f"train.device={name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FgvcError(f"train.device={name} but no CUDA device is visible (use train.device=cpu)")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def build_optimizer(cfg: Config, model: nn.Module, method=None, world_size: int = 1) -> torch.optim.Optimizer:
    """Two parameter groups: the pretrained backbone (``backbone_lr``) and the new layers (``lr``);
    a third, "method" (``lr``), for a method's own trainable layers (``method.parameters()``, CTC).
    ``optim.base_batch_size`` scales the rates by the global batch (``data.batch_size`` × processes)."""
    o = cfg.optim
    scale = cfg.data.batch_size * world_size / o.base_batch_size if o.base_batch_size else 1.0
    new = {id(p) for p in model.new_parameters()}
    new_params = [p for p in model.parameters() if id(p) in new]
    old_params = [p for p in model.parameters() if id(p) not in new]
    groups = [{"params": old_params, "lr": (o.backbone_lr or o.lr) * scale, "name": "backbone"},
              {"params": new_params, "lr": o.lr * scale, "name": "new"}]
    if isinstance(method, nn.Module):
        groups.append({"params": [p for p in method.parameters() if p.requires_grad], "lr": o.lr * scale,
                       "name": "method"})
    groups = [g for g in groups if g["params"]]
    if o.name == "sgd":
        return torch.optim.SGD(groups, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, betas=o.betas, weight_decay=o.weight_decay)


def set_backbone_frozen(model: nn.Module, frozen: bool, bn: str = "eval") -> None:
    """Frozen: no gradients in the pretrained part, and with ``bn="eval"`` its BatchNorm statistics kept
    (eval mode); ``bn="train"`` leaves it in training mode, as a loop that only skips the backbone's
    optimiser step does (the RMG-PMSI release)."""
    new = {id(p) for p in model.new_parameters()}
    for p in model.parameters():
        if id(p) not in new:
            p.requires_grad_(not frozen)
    if frozen and bn == "eval":
        model.backbone.eval()


class Trainer:
    def __init__(self, cfg: Config, splits: Splits | None = None):
        if not method_class(cfg).trains_model:
            raise FgvcError(f"method.name={cfg.method.name} trains no image model: its run is "
                            "fgvc.engine.run.train_and_report (fgvc train)")
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.dist = distributed.init_distributed(cfg.train.device)  # one process of torchrun, or alone
        self.device = self.dist.local_device(resolve_device(cfg.train.device))
        on_cuda = self.device.type == "cuda"
        self.amp = on_cuda if cfg.train.amp is None else cfg.train.amp
        self.channels_last = on_cuda if cfg.train.channels_last is None else cfg.train.channels_last
        seed_everything(cfg.seed + self.dist.rank, cfg.train.deterministic)  # rank 0's weights are broadcast

        self.splits = splits or prepare_splits(cfg.data)
        self.num_classes = len(self.splits.classes)
        if not self.splits.val:
            raise FgvcError(f"the validation split ({self.splits.names['val']}) is empty: raise "
                            "data.val_fraction or give data.val_split")
        self.train_set = make_dataset(cfg.data, self.splits.train, train=True)
        self.val_set = make_dataset(cfg.data, self.splits.val, train=False)
        shard = {"rank": self.dist.rank, "world_size": self.dist.world_size}
        self.train_loader = make_loader(cfg.data, self.train_set, train=True, seed=cfg.seed, **shard)
        self.val_loader = make_loader(cfg.data, self.val_set, train=False, **shard)
        self.steps_per_epoch = len(self.train_loader)
        if cfg.train.limit_train_batches:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.train.limit_train_batches)
        if self.steps_per_epoch == 0:
            raise FgvcError(f"train split has {len(self.train_set)} images, fewer than one batch of "
                            f"{cfg.data.batch_size} for each of {self.dist.world_size} processes: lower "
                            "data.batch_size")

        self.groups = [count for _, count in self.splits.groups]  # class counts per dataset (joint data)
        self.deployment = self._deployment_info()
        self.model = build_model(cfg, self.num_classes, groups=self.groups)
        self.model = distributed.convert_sync_batchnorm(self.model, self.dist, cfg).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.method = build_method(cfg, self.num_classes, model=self.model, num_train=len(self.train_set))
        if isinstance(self.method, nn.Module):  # a method with its own layers and state (CTC)
            self.method.to(self.device)
        if self.dist.enabled:
            distributed.check_supported(cfg, self.method)
        self.train_model = distributed.wrap_model(self.model, self.dist, cfg)  # what methods train through
        self.optimizer = build_optimizer(cfg, self.model, self.method, self.dist.world_size)
        self.scheduler = build_scheduler(self.optimizer, self.steps_per_epoch, cfg.schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and on_cuda)
        self.state = TrainState()
        self.ckpt_dir = self.run_dir / "checkpoints"

    # --- checkpoints -------------------------------------------------------------------------
    def _deployment_info(self) -> dict:
        """What prediction needs beyond the weights: the taxonomy of the classes (iNaturalist) and
        where training saw each class (``fgvc predict --region``; not for streamed shards, whose
        records would all have to be read)."""
        info = {"taxonomy": {rank: list(values) for rank, values in self.splits.source.taxonomy.items()}}
        if not isinstance(self.splits.train, ShardIndex):
            info["occurrences"] = occurrence_table(self.splits.train)
        return info

    def checkpoint(self) -> dict:
        ckpt = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "state": asdict(self.state), "rng": rng_state(), "config": self.cfg.model_dump(mode="json"),
                "classes": self.splits.classes, "dataset": self.splits.source.name, "groups": self.groups,
                "world_size": self.dist.world_size, "rng_ranks": self.dist.gather_object(rng_state()),
                **self.deployment}
        if isinstance(self.method, nn.Module):  # the method's own state (CTC: heads, banks, snapshot)
            ckpt["method"] = self.method.state_dict()
        return ckpt

    def _save(self, ckpt: dict, path: Path) -> None:
        """Rank 0 writes; the others wait, so that no rank runs ahead of a checkpoint being written."""
        if self.dist.is_main:
            save_atomic(ckpt, path)
        self.dist.barrier()

    def save_last(self) -> None:
        self._save(self.checkpoint(), self.ckpt_dir / "last.pt")

    def weights(self) -> dict:
        """What evaluation needs (no optimiser or RNG): the content of best.pt and epoch_NNN.pt."""
        return {"model": self.model.state_dict(), "state": asdict(self.state),
                "config": self.cfg.model_dump(mode="json"), "classes": self.splits.classes,
                "dataset": self.splits.source.name, "groups": self.groups, **self.deployment}

    def save_best(self) -> None:
        self._save(self.weights(), self.ckpt_dir / "best.pt")

    def save_epoch(self, epoch: int) -> None:
        """``epoch_{epoch:03d}.pt`` (0 = initial weights) for analyses over training (transfer, MINE)."""
        self._save(self.weights(), self.ckpt_dir / f"epoch_{epoch:03d}.pt")

    def resume(self) -> None:
        ckpt = load_checkpoint(self.ckpt_dir / "last.pt")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if "method" in ckpt:
            self.method.load_state_dict(ckpt["method"])
        self.state = TrainState(**ckpt["state"])
        set_rng_state(distributed.restore_rng(ckpt, self.dist, self.cfg.seed))
        distributed.reshard(self.state, self.scheduler, ckpt.get("world_size", 1), self.dist, self.cfg,
                            self.steps_per_epoch)
        log.info("resumed from %s at epoch %d, step %d", self.ckpt_dir / "last.pt", self.state.epoch,
                 self.state.step_in_epoch)

    # --- the loop ----------------------------------------------------------------------------
    def fit(self) -> TrainState:
        cfg = self.cfg
        resuming = cfg.train.resume
        if resuming:
            check_resumable(self.run_dir)
        self.metrics = MetricsLog(self.run_dir, resume=resuming) if self.dist.is_main else distributed.NullMetricsLog()
        if resuming:
            self.resume()
            self.metrics.truncate(self.state.epoch)
        elif cfg.train.keep_epoch_checkpoints:
            self.save_epoch(0)
        try:
            while self.state.epoch < cfg.schedule.epochs:
                row = self.train_one_epoch()
                self.dist.check_replicas(self.model, self.state.epoch + 1)
                val = evaluate(self.model, self.method, self.val_loader, self.device, self.num_classes,
                               cfg.eval.topk, amp=self.amp, channels_last=self.channels_last,
                               desc="val", progress=cfg.train.progress, gather=self.dist.gather_object)
                row |= {"val_top1": val["top1"], f"val_top{cfg.eval.topk[1]}": val[f"top{cfg.eval.topk[1]}"],
                        "val_skipped_images": len(val["skipped"])}
                improved = val["top1"] > self.state.best_top1
                if improved:
                    self.state.best_top1, self.state.best_epoch = val["top1"], self.state.epoch
                self.metrics.epoch(row)
                log.info("epoch %d/%d  loss %.4f  train_top1 %.2f  val_top1 %.2f%s  (%.0f img/s)",
                         self.state.epoch + 1, cfg.schedule.epochs, row["train_loss"], row["train_top1"],
                         val["top1"], "  *best*" if improved else "", row["images_per_s"])
                self.state.start_epoch()
                if improved:
                    self.save_best()
                if cfg.train.keep_epoch_checkpoints:
                    self.save_epoch(self.state.epoch)
                self.save_last()
        finally:
            self.metrics.close()
        return self.state

    def train_one_epoch(self) -> dict:
        cfg, state = self.cfg, self.state
        model, optimizer = self.model, self.optimizer
        model.train()
        frozen = state.epoch < cfg.schedule.freeze_backbone_epochs
        set_backbone_frozen(model, frozen, cfg.schedule.frozen_backbone_bn)
        self.method.on_epoch_start(  # a method's stages (CTC), also after a resume
            model, state.epoch, optimizer, self.train_loader)
        set_epoch(self.train_loader, state.epoch, start=state.position)
        bar = tqdm(total=self.steps_per_epoch, initial=state.step_in_epoch, leave=False, dynamic_ncols=True,
                   desc=f"epoch {state.epoch + 1}/{cfg.schedule.epochs}",
                   disable=None if cfg.train.progress and self.dist.is_main else True)
        start, seen_here = time.perf_counter(), 0
        for batch in self.train_loader:
            if state.step_in_epoch >= self.steps_per_epoch:
                break
            state.position += cfg.data.batch_size * self.dist.world_size
            for message in batch["skipped"]:
                log.warning("skipped %s", message)
            with_images, skipped = self.dist.sum(float("image" in batch), len(batch["skipped"]))
            state.skipped += int(skipped)
            if with_images < self.dist.world_size:  # no readable image on some rank: every rank skips the step
                continue
            batch = move(batch, self.device, self.channels_last)
            loss, logits = self.train_step(batch)
            parts = {}
            if isinstance(loss, dict):  # several phases' losses by name; "loss" is the one to show
                parts = {name: value for name, value in loss.items() if name != "loss"}
                loss = loss["loss"]
            state.step_in_epoch += 1
            state.global_step += 1
            n = len(batch["label"])
            loss_sum, correct, n, *part_sums = self.dist.sum(
                loss * n, int((logits.argmax(1) == batch["label"]).sum()), n, *(v * n for v in parts.values()))
            loss, n = loss_sum / n, int(n)  # the global batch's figures
            state.loss_sum += loss_sum
            for name, value in zip(parts, part_sums):
                state.part_sums[name] = state.part_sums.get(name, 0.0) + value
            state.correct += int(correct)
            state.seen += n
            seen_here += n
            lr = optimizer.param_groups[-1]["lr"]
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}",
                            img_s=f"{seen_here / (time.perf_counter() - start):.0f}")
            if state.global_step % cfg.train.log_every_steps == 0:
                self.metrics.step(state.global_step, loss=loss, lr=lr,
                                  **{f"loss_{name}": value / n for name, value in zip(parts, part_sums)})
            every = cfg.train.checkpoint_every_steps
            if every and state.global_step % every == 0 and state.step_in_epoch < self.steps_per_epoch:
                self.save_last()
        bar.close()
        if state.skipped:
            log.warning("epoch %d: skipped %d unreadable images (named above)", state.epoch + 1, state.skipped)
        elapsed = time.perf_counter() - start
        parts = {f"train_loss_{name}": value / max(state.seen, 1) for name, value in state.part_sums.items()}
        return {"epoch": state.epoch + 1, "train_loss": state.loss_sum / max(state.seen, 1), **parts,
                "train_top1": 100.0 * state.correct / max(state.seen, 1), "lr": optimizer.param_groups[-1]["lr"],
                "images_per_s": seen_here / max(elapsed, 1e-9), "epoch_time_s": elapsed,
                "skipped_images": state.skipped, "train_samples": state.seen}

    def train_step(self, batch: dict) -> tuple[float | dict[str, float], torch.Tensor]:
        """One iteration: the method's ``train_step`` (one loss and one update, or several, e.g. PMG's
        phases); the schedule advances once per iteration either way.

        It returns the loss to show, or a dict of named losses whose ``"loss"`` is the one to show (the
        others are logged as ``train_loss_<name>``), and the logits."""
        loss, logits = self.method.train_step(self.train_model, batch, self.update, self.autocast)
        self.scheduler.step()
        return loss, logits.detach()

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, enabled=self.amp)

    def update(self, loss: torch.Tensor, only: list[nn.Parameter] | None = None,
               skip: list[nn.Parameter] | None = None, grads: list[torch.Tensor] | None = None) -> float:
        """Backward and optimiser step for one loss; stops the run on a non-finite one.

        ``only``: gradients of these parameters alone (``torch.autograd.grad``; or the given
        ``grads``, e.g. PCGrad's), every other parameter keeps no gradient and so is not stepped.
        ``skip``: the full backward, then these parameters' gradients are dropped.
        """
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {self.state.epoch + 1}, step "
                f"{self.state.step_in_epoch + 1} (global step {self.state.global_step + 1}); the last good "
                f"checkpoint is {self.ckpt_dir / 'last.pt'} — lower optim.lr or set train.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        if only is not None:
            if grads is None:
                grads = torch.autograd.grad(self.scaler.scale(loss), only, allow_unused=True)
            elif self.scaler.is_enabled():
                grads = [g * self.scaler.get_scale() for g in grads]
            grads = self.dist.mean_gradients(grads)  # autograd.grad bypasses DDP's averaging
            for p, g in zip(only, grads):
                p.grad = None if g is None else g.detach()
        else:
            self.scaler.scale(loss).backward()
            for p in skip or ():
                p.grad = None
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()


# What makes a folder a run worth keeping: ``--overwrite`` alone replaces these.
RUN_OUTPUTS = ("checkpoints/*.pt", "metrics.csv", "metrics.jsonl", "report.json", "report.md")


def run_outputs(run_dir: Path) -> list[Path]:
    """The checkpoints, metrics and reports ``run_dir`` holds."""
    return sorted(path for pattern in RUN_OUTPUTS for path in run_dir.glob(pattern))


def prepare_run_dir(cfg: Config, overwrite: bool = False) -> Path:
    """Create ``runs/<name>/`` and save the resolved config; refuse to clobber a run by accident.

    A folder holding any checkpoint, metrics or report is a run: only ``--overwrite`` replaces it
    (removing those files first), only ``train.resume=true`` continues it — and that needs its last.pt.
    """
    run_dir = cfg.run_dir
    if cfg.train.resume:
        check_resumable(run_dir)
    else:
        held = run_outputs(run_dir)
        if held and not overwrite:
            names = ", ".join(str(p.relative_to(run_dir)) for p in held[:3]) + (", ..." if held[3:] else "")
            raise FgvcError(f"{run_dir} already holds a run ({names}): pass train.resume=true to continue "
                            "it, name=<other> for a new one, or --overwrite to replace it")
        for old in held:
            old.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    return run_dir


def check_resumable(run_dir: Path) -> Path:
    """The last.pt that ``train.resume=true`` continues from; an error if there is none."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        raise FgvcError(f"train.resume=true but there is no {last} to resume from: drop train.resume "
                        "(or set train.resume=false) to start this run")
    return last


def setup_file_logging(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("fgvc").addHandler(handler)
