"""Data-parallel training across processes (``torchrun``): process group, DDP, sharding, reductions.

``torchrun --nproc_per_node N -m fgvc train CONFIG`` starts N copies of ``fgvc train``; each reads
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from its environment (``init_distributed``) and joins one
process group: NCCL with ``cuda:LOCAL_RANK`` when the run uses CUDA, gloo on CPU. Without those
variables (or with ``WORLD_SIZE=1``) everything here is a no-op and training is a single process.

What a data-parallel run changes, and why it stays equal to one process with the global batch:

- ``data.batch_size`` is per process; the global batch is ``batch_size × world_size``, and the
  learning-rate scaling of ``optim.base_batch_size`` uses the global batch.
- Training data: one seeded permutation per epoch shared by all ranks, dealt round-robin from the
  epoch's global position (``ResumableSampler``): the ranks' batches of step k together are exactly
  the single-process batch k of the global batch size, each sample with the same augmentation seed.
  The sampler position saved in checkpoints counts samples of all ranks, so a run resumes on another
  world size (``reshard``).
- Gradients: DDP averages them over ranks (each rank's loss is a mean over its own batch, so the
  average is the global batch's mean). Methods see the model through ``DDPModel``, which routes
  every forward pass they train through (the model's call and the method's ``forwards``) into DDP.
  Gradients taken with ``torch.autograd.grad`` (the trainer's ``update(only=…)``: the erudite meta
  step and PCGrad) never reach DDP's hooks, so the trainer averages them itself (``mean_gradients``).
- Metrics are sums over ranks; checkpoints, logs, metrics and reports are written by rank 0 while
  the others wait at a barrier; evaluation is split in strided slices, each rank counts its own
  (top-k hits, per-class counts, mistakes) and the counts are added, so every sample counts exactly
  once (no padding duplicates) and no rank ever holds another's scores.
- Per-rank randomness (dropout, mixup draws, mosaics, the erudite meta-test choice) is seeded
  ``seed + rank``; initial weights are rank 0's (DDP broadcasts them).
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fgvc.config import Config
from fgvc.engine.checkpoint import rng_state
from fgvc.errors import FgvcError
from fgvc.methods import method_class

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size, and where reductions happen."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    cuda: bool = False  # NCCL: reductions on this rank's GPU

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """Under DDP each process drives one GPU: ``cuda:LOCAL_RANK`` (whatever index was asked)."""
        return torch.device("cuda", self.local_rank) if self.enabled and device.type == "cuda" else device

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        """Each value summed over ranks (float64: exact for counts)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=f"cuda:{self.local_rank}" if self.cuda else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def gather_object(self, obj) -> list:
        """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def mean_gradients(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The average over ranks of gradients DDP did not see (``torch.autograd.grad``).

        A gradient that is ``None`` here must be ``None`` on every rank (the same graph everywhere).
        """
        grads = list(grads)
        if not self.enabled:
            return grads
        present = [g for g in grads if g is not None]
        if present:
            flat = torch.cat([g.detach().reshape(-1).float() for g in present])
            dist.all_reduce(flat)
            flat /= self.world_size
            chunks = iter(torch.split(flat, [g.numel() for g in present]))
            grads = [None if g is None else next(chunks).view_as(g).to(g.dtype) for g in grads]
        return grads

    def check_replicas(self, model: nn.Module, epoch: int) -> None:
        """Stop if the ranks' weights differ: a gradient that bypassed DDP's averaging (a method's own
        ``backward`` outside ``DDPModel``) would make them drift apart silently."""
        if not self.enabled:
            return
        with torch.no_grad():
            params = [p.detach().double() for p in model.parameters()]
            mine = torch.stack([sum(p.sum() for p in params), sum(p.pow(2).sum() for p in params)]).cpu()
        sums = self.gather_object(mine)
        if any(not torch.allclose(other, sums[0], rtol=1e-9, atol=0.0) for other in sums):
            raise FgvcError(f"after epoch {epoch}, the {self.world_size} processes hold different weights "
                            f"(checksums {[s.tolist() for s in sums]}): a gradient bypassed DDP's averaging — "
                            "train this method in a single process and report it")


_CONTEXT: DistContext | None = None


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (once per process).

    ``device_name`` is ``train.device``: CUDA (asked, or ``auto`` with a GPU) uses NCCL and pins this
    process to ``cuda:LOCAL_RANK``; otherwise gloo. Ranks other than 0 log warnings and errors only.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = not device_name.startswith("cpu") and torch.cuda.is_available()
    if device_name.startswith("cuda") and not cuda:
        raise FgvcError(f"train.device={device_name} but no CUDA device is visible (use train.device=cpu)")
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_destroy)
    if rank:
        logging.getLogger("fgvc").setLevel(logging.WARNING)
    _CONTEXT = DistContext(rank, world_size, local_rank, cuda)
    return _CONTEXT


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistContext:
    """The context of this process (single-process if ``init_distributed`` was not called)."""
    return _CONTEXT or DistContext()


# --- the model under DDP ---------------------------------------------------------------------

def find_unused_parameters(cfg: Config) -> bool:
    """Whether DDP must look for parameters a backward pass leaves without gradient: where the method
    says so (``Method.unused_parameters``: e.g. progressive phases, each reaching one stage's
    classifier), and for any method while the backbone is frozen (``schedule.freeze_backbone_epochs``).
    Where no backward misses a parameter, skipping the search saves a graph traversal. A wrong
    ``False`` is never silent: DDP stops with an error at the next step.
    """
    return method_class(cfg).unused_parameters(cfg.method) or cfg.schedule.freeze_backbone_epochs > 0


class _Entry(nn.Module):
    """The one ``forward`` DDP wraps: ``forward(name, ...)`` runs ``model.<name>(...)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, name: str, *args, **kwargs):
        return getattr(self.model, name)(*args, **kwargs)


class DDPModel:
    """The model as a method sees it under DDP.

    Calling it, and the method's training forwards (``Method.forwards``), go through DDP, so their
    backward passes average the gradients over ranks; everything else (submodules, ``stages``,
    ``features`` under ``no_grad``, parameters for ``functional_call``) is the plain model's.
    """

    def __init__(self, model: nn.Module, ddp: DistributedDataParallel, forwards: tuple[str, ...] = ()):
        self.module = model
        self.ddp = ddp
        self.forwards = forwards

    def __call__(self, *args, **kwargs):
        return self.ddp("forward", *args, **kwargs)

    def __getattr__(self, name: str):
        if name in self.__dict__.get("forwards", ()):
            return functools.partial(self.ddp, name)
        return getattr(self.module, name)


def check_supported(cfg: Config, method) -> None:
    """Refuse what DDP would get silently wrong."""
    if isinstance(method, nn.Module) and any(True for _ in method.parameters()):
        raise FgvcError(f"method.name={cfg.method.name} does not support DDP yet: its own layers and "
                        "per-sample state (memory banks) are not synchronised across processes; "
                        "train it in a single process (without torchrun)")


def wrap_model(model: nn.Module, ctx: DistContext, cfg: Config) -> nn.Module | DDPModel:
    """``model`` itself in a single process; under DDP, a ``DDPModel`` (SyncBN converted first, if asked)."""
    if not ctx.enabled:
        return model
    device_ids = [ctx.local_rank] if ctx.cuda else None
    ddp = DistributedDataParallel(_Entry(model), device_ids=device_ids,
                                  find_unused_parameters=find_unused_parameters(cfg))
    return DDPModel(model, ddp, method_class(cfg).forwards)


def convert_sync_batchnorm(model: nn.Module, ctx: DistContext, cfg: Config) -> nn.Module:
    """``train.sync_bn``: BatchNorm statistics over the global batch instead of each rank's share."""
    if cfg.train.sync_bn and ctx.enabled:
        if not ctx.cuda:
            raise FgvcError("train.sync_bn=true needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only): on CPU "
                            "set train.sync_bn=false, or use a backbone without BatchNorm")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


# --- resuming ----------------------------------------------------------------------------------


def restore_rng(ckpt: dict, ctx: DistContext, seed: int) -> dict:
    """The RNG state this rank resumes with: its own when the world size is unchanged; otherwise
    rank 0's, re-seeded for the other ranks from (seed, rank, step) so they stay distinct."""
    states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(states) == ctx.world_size:
        return states[ctx.rank]
    if ctx.rank == 0:
        return states[0]
    step = ckpt["state"]["global_step"]
    mix = (seed * 1_000_003 + ctx.rank) * 1_000_033 + step
    random.seed(mix)
    np.random.seed(mix % 2**32)
    torch.manual_seed(mix)
    state = rng_state()
    if "cuda" not in states[0]:
        state.pop("cuda", None)
    return state


def reshard(state, scheduler, old_world_size: int, ctx: DistContext, cfg: Config, steps_per_epoch: int) -> None:
    """Continue a run saved with ``old_world_size`` processes on ``ctx.world_size``.

    ``state.position`` counts the samples of the epoch drawn by all ranks, so the sampler resumes at
    the same place of the same permutation: the rest of the epoch holds exactly the samples not yet
    drawn, each once, with the augmentation it would have had. What changes is the global batch,
    hence the number of steps per epoch: the step counter of the epoch and the learning-rate
    schedule are moved to the same fraction of the training. ``global_step`` keeps counting the
    optimiser steps actually taken.
    """
    if old_world_size == ctx.world_size:
        return
    if (cfg.data.joint or cfg.data.format == "shards") and state.position:
        what = "joint data (balanced batches)" if cfg.data.joint else "streamed shards"
        raise FgvcError(f"this run stopped mid-epoch on {old_world_size} processes; {what} resumes only on "
                        f"the same number of processes, not {ctx.world_size}: resume it with the old count, "
                        "or from a checkpoint taken at an epoch's end")
    global_batch = cfg.data.batch_size * ctx.world_size
    state.step_in_epoch = math.ceil(state.position / global_batch)
    step = state.epoch * steps_per_epoch + state.step_in_epoch
    scheduler.last_epoch = step
    lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs
    log.info("resharded a run of %d processes onto %d: epoch %d continues at sample %d (step %d of %d)",
             old_world_size, ctx.world_size, state.epoch + 1, state.position, state.step_in_epoch,
             steps_per_epoch)


class NullMetricsLog:
    """What ranks other than 0 log: nothing (rank 0 writes metrics.csv/jsonl and TensorBoard)."""

    def rows(self) -> list[dict]:
        return []

    def truncate(self, epochs_done: int) -> None:
        pass

    def epoch(self, row: dict) -> None:
        pass

    def step(self, step: int, **scalars: float) -> None:
        pass

    def close(self) -> None:
        pass


def run_on_main(ctx: DistContext, fn, *args, **kwargs):
    """``fn`` on rank 0 alone while the others wait; every rank returns its result (or raises its
    ``FgvcError``), so a refused run stops all processes instead of leaving them at a barrier."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn(*args, **kwargs)
        except FgvcError as exc:
            error = str(exc)
    if ctx.enabled:
        box = [(result, error)]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
    if error is not None:
        raise FgvcError(error)
    return result
