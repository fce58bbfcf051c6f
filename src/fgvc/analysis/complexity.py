"""How big and how fast a model is: parameters, FLOPs, images per second (``fgvc analyze complexity``).

- Parameters: total, trainable (``requires_grad``), and at test time, without the modules only
  training uses (the erudite model's auxiliary per-dataset classifiers).
- FLOPs from ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as **2 FLOPs**
  (so MACs = FLOPs / 2, the unit most FGVC papers call "FLOPs"). It counts matrix products and
  convolutions (forward and backward); element-wise work (activations, normalisation, pooling, the
  optimiser's update) is not counted. Per image: one test-time forward (the method's prediction), one
  training-time forward (auxiliary outputs included), and one whole training step (every forward and
  backward the method runs, e.g. the progressive phases or the erudite meta step).
- Images per second on the configured device, at the given batch size and resolution, on random
  inputs (data loading excluded): training = the trainer's own step (forward, backward, optimiser
  step), inference = the method's prediction under ``no_grad``. Warm-up steps are not timed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fgvc.checkpoint import load_checkpoint
from fgvc.config import build_config
from fgvc.data.metadata import metadata_dim
from fgvc.engine.evaluate import predictions
from fgvc.engine.report import markdown_table
from fgvc.engine.trainer import Trainer
from fgvc.errors import FgvcError

CONVENTION = ("FLOPs = 2 x MACs (torch.utils.flop_counter counts a multiply-add as 2); "
              "matrix products and convolutions only")


def train_only_modules(model: nn.Module) -> list[nn.Module]:
    """Modules used in training but not at inference: the erudite head's auxiliary classifiers."""
    aux = getattr(getattr(model, "head", None), "aux_classifiers", None)
    return [aux] if aux is not None else []


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``total`` (= at training time), ``trainable`` (``requires_grad``) and ``test_time`` counts."""
    total = sum(p.numel() for p in model.parameters())
    train_only = sum(p.numel() for m in train_only_modules(model) for p in m.parameters())
    return {"total": total, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "test_time": total - train_only}


def count_flops(fn: Callable, inputs: tuple | torch.Tensor = (), *, grad: bool = False) -> int:
    """FLOPs of one call ``fn(*inputs)`` (FLOPs = 2 x MACs), forward and any backward it runs.

    ``grad=False`` runs it under ``no_grad`` (a plain forward); ``grad=True`` for a training step.
    """
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(grad):
        fn(*inputs)
    return int(counter.get_total_flops())


def model_complexity(model: nn.Module, image_size: int, meta_dim: int = 0) -> dict[str, float]:
    """Parameters (M) and GMACs per image of one forward, at training and at test time.

    Training time keeps the auxiliary outputs (``forward_train`` of an erudite model); test time is
    ``model(image)`` (``model(image, meta)`` with ``meta_dim``). The model is left in eval mode.
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    inputs = (x, torch.zeros(1, meta_dim, device=device)) if meta_dim else (x,)
    model.eval()
    train = model.forward_train if hasattr(model, "forward_train") else model
    params = count_parameters(model)
    return {"params_train_m": params["total"] / 1e6, "params_test_m": params["test_time"] / 1e6,
            "gmacs_train": count_flops(train, (x,) if train is not model else inputs) / 2e9,
            "gmacs_test": count_flops(model, inputs) / 2e9}


def random_batch(num_classes: int, batch_size: int, image_size: int, meta_dim: int, device: torch.device,
                 seed: int = 0) -> dict:
    """A batch as the loaders give it: normalised-scale images, labels, metadata in [-1, 1] (sin/cos)."""
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.randn(batch_size, 3, image_size, image_size, generator=g),
             "label": torch.randint(num_classes, (batch_size,), generator=g),
             "meta": torch.rand(batch_size, meta_dim, generator=g) * 2 - 1,
             "index": torch.arange(batch_size), "skipped": []}
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step: Callable[[], object], batch_size: int, steps: int, warmup: int,
                      device: torch.device) -> float:
    """Images per second of ``steps`` timed calls of ``step`` (one batch each) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps * batch_size / max(time.perf_counter() - start, 1e-9)


def _run_config(cfg, checkpoint: str | Path | None, batch_size: int | None, image_size: int | None):
    """The config the measurement runs: the checkpoint's model and method (if given), the asked batch
    and resolution, no pretrained download, no loader workers; and the checkpoint (or None)."""
    ckpt = load_checkpoint(checkpoint) if checkpoint else None
    data_update = {"batch_size": batch_size or cfg.data.batch_size,
                   "image_size": image_size or cfg.data.image_size, "num_workers": 0}
    model_cfg, method_cfg = cfg.model, cfg.method
    if ckpt is not None and ckpt.get("config"):
        own = build_config(ckpt["config"])
        model_cfg, method_cfg = own.model, own.method
        data_update["metadata"] = own.data.metadata
    run = cfg.model_copy(update={"data": cfg.data.model_copy(update=data_update),
                                 "model": model_cfg.model_copy(update={"pretrained": None}),
                                 "method": method_cfg})
    return run, ckpt


def measure_complexity(cfg, checkpoint: str | Path | None = None, batch_size: int | None = None,
                       image_size: int | None = None, steps: int = 10, warmup: int = 2) -> dict:
    """Parameters, FLOPs per image and images/s of the config's model (or the checkpoint's) on its device."""
    if steps < 1 or warmup < 0:
        raise FgvcError(f"--steps {steps} / --warmup {warmup}: need at least 1 timed step and 0 or more warm-up")
    if (batch_size is not None and batch_size < 1) or (image_size is not None and image_size < 16):
        raise FgvcError(f"--batch-size {batch_size} / --image-size {image_size}: need at least 1 image of 16 px")
    run, ckpt = _run_config(cfg, checkpoint, batch_size, image_size)
    trainer = Trainer(run)  # the real training step: the method's phases, updates, AMP and schedule
    model, method, device = trainer.model, trainer.method, trainer.device
    if ckpt is not None:
        if ckpt.get("classes") and len(ckpt["classes"]) != trainer.num_classes:
            raise FgvcError(f"{checkpoint}: trained on {len(ckpt['classes'])} classes, the config's dataset "
                            f"has {trainer.num_classes}")
        model.load_state_dict(ckpt["model"])
    b, s = run.data.batch_size, run.data.image_size
    batch = random_batch(trainer.num_classes, b, s, metadata_dim(run.data.metadata), device)
    if trainer.channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    params = count_parameters(model)

    model.eval()

    @torch.no_grad()
    def infer():
        with trainer.autocast():
            return predictions(method, model, batch)

    def forward_train():
        with trainer.autocast():
            return model.forward_train(batch["image"]) if hasattr(model, "forward_train") else model(
                batch["image"], batch["meta"])

    flops = {"test_forward": count_flops(infer) / b, "train_forward": count_flops(forward_train) / b}
    inference = images_per_second(infer, b, steps, warmup, device)
    model.train()
    flops["train_step"] = count_flops(lambda: trainer.train_step(batch), grad=True) / b
    training = images_per_second(lambda: trainer.train_step(batch), b, steps, warmup, device)
    return {"name": cfg.name, "checkpoint": str(checkpoint) if checkpoint else None,
            "model": run.model.backbone, "head": run.model.head, "fusion": run.model.fusion.name,
            "method": run.method.name, "num_classes": trainer.num_classes, "image_size": s, "batch_size": b,
            "device": str(device), "amp": trainer.amp, "threads": torch.get_num_threads(), "steps": steps,
            "warmup": warmup, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "params": params, "flops_per_image": flops,
            "images_per_s": {"train": training, "inference": inference}, "convention": CONVENTION}


def format_complexity(result: dict) -> str:
    """Markdown: what was measured, then one row for training and one for inference."""
    p, f, speed = result["params"], result["flops_per_image"], result["images_per_s"]
    rows = [{"": "training", "parameters (M)": p["total"] / 1e6, "trainable (M)": p["trainable"] / 1e6,
             "forward GFLOPs / image": f["train_forward"] / 1e9, "forward GMACs / image": f["train_forward"] / 2e9,
             "step GFLOPs / image": f["train_step"] / 1e9, "images / s": speed["train"]},
            {"": "inference", "parameters (M)": p["test_time"] / 1e6, "trainable (M)": "",
             "forward GFLOPs / image": f["test_forward"] / 1e9, "forward GMACs / image": f["test_forward"] / 2e9,
             "step GFLOPs / image": "", "images / s": speed["inference"]}]
    load = result.get("load_average")
    head = (f"`{result['model']}` (head {result['head']}, fusion {result['fusion']}, method {result['method']}), "
            f"{result['num_classes']} classes; batch {result['batch_size']} of {result['image_size']} px on "
            f"{result['device']} (AMP {result['amp']}, {result['threads']} threads), {result['steps']} timed steps "
            f"after {result['warmup']} warm-up; torch {result['torch']}"
            + (f"; 1-min load average {load:.2f} at the end" if load is not None else ""))
    return "\n\n".join([head, markdown_table(rows), f"{result['convention']}. Training step: every forward and "
                         "backward of one iteration of the method; images/s on random inputs, data loading "
                         "excluded; inference without the training-only modules (erudite auxiliary classifiers)."])


def write_complexity(result: dict, out_dir: str | Path) -> Path:
    """``complexity.json`` and ``complexity.md`` in ``out_dir``; returns the Markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "complexity.json").write_text(json.dumps(result, indent=2))
    path = out_dir / "complexity.md"
    path.write_text(f"# {result['name']}: complexity\n\n{format_complexity(result)}\n")
    return path
