"""Framework overhead: fgvc's training epoch vs a bare PyTorch loop on the same model, batch and data.

Both loops consume the very same DataLoader (real image files, real workers) and the same model and
optimiser settings; the bare loop is forward, cross-entropy, zero_grad, backward, step, scheduler
step. The ratio above 1 is what the engine adds (method dispatch, device moves, progress bar, running
metrics, TensorBoard scalars). Runs alternate and the median of several epochs is reported.

    python benchmarks/train_overhead.py [--backbone resnet18] [--size 64] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fgvc.config import build_config
from fgvc.engine.metrics_log import MetricsLog
from fgvc.engine.trainer import Trainer, TrainState


def write_images(root: Path, classes: int, per_class: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        for split, n in (("train", per_class), ("test", 2)):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


def bare_epoch(trainer: Trainer) -> float:
    """The plain PyTorch loop, on the trainer's own model, optimiser, scheduler and loader."""
    model, opt, sched, loader = trainer.model, trainer.optimizer, trainer.scheduler, trainer.train_loader
    loader.sampler.set_epoch(0)
    model.train()
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= trainer.steps_per_epoch:
            break
        images, labels = batch["image"], batch["label"]
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss.item()
    return time.perf_counter() - start


def fgvc_epoch(trainer: Trainer) -> float:
    trainer.state = TrainState()
    start = time.perf_counter()
    trainer.train_one_epoch()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per timed epoch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_images(root, classes=8, per_class=args.batch * args.steps // 8 + 8, size=args.size)
        cfg = build_config({
            "name": "overhead", "output_dir": str(Path(tmp) / "runs"),
            "data": {"format": "folder", "root": str(root), "image_size": args.size, "batch_size": args.batch,
                     "num_workers": args.workers, "val_fraction": 0.05},
            "model": {"backbone": args.backbone}, "schedule": {"epochs": 10, "warmup_epochs": 1},
            "train": {"progress": True, "limit_train_batches": args.steps, "device": "cpu"}})
        trainer = Trainer(cfg)
        trainer.metrics = MetricsLog(cfg.run_dir)
        fgvc_epoch(trainer), bare_epoch(trainer)  # warm-up: workers, allocator, kernels
        ours, bare = [], []
        for i in range(args.repeats):  # alternate which goes first, so neither gets a warmer cache
            if i % 2:
                bare.append(bare_epoch(trainer))
            ours.append(fgvc_epoch(trainer))
            if not i % 2:
                bare.append(bare_epoch(trainer))
        trainer.metrics.close()
    images = args.steps * args.batch
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"model {args.backbone}, {args.size}px, batch {args.batch}, {args.steps} steps, "
          f"{args.workers} workers, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"bare PyTorch loop : {b:7.3f} s/epoch  {images / b:7.1f} img/s")
    print(f"fgvc Trainer      : {o:7.3f} s/epoch  {images / o:7.1f} img/s")
    print(f"ratio fgvc / bare : {o / b:.3f}  (medians of {args.repeats}; goal <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
