"""A busy machine: how much one competing CPU-bound process slows an epoch of the demo model.

For each thread policy, an epoch of the demo's image-only model (timm ``test_resnet``, 64 px, batch
32, the synthetic iNat set through fgvc's own loader) is timed in a fresh process — once on its own,
once beside one process that spins on one core. Each child times fgvc's training epoch and a bare
PyTorch loop (forward, cross-entropy, backward, step) on the same model, loader and threads, so the
slowdown is seen to be torch's, not the engine's. Losing one of C cores should cost about C / (C - 1)
(2x on two cores); OpenMP threads that spin while they wait for a descheduled sibling cost far more.

Policies (each applied before torch is imported, as the ``fgvc`` command does):
  torch-default  libgomp's default wait (300,000 spins, then sleep), torch's thread count (physical cores)
  passive        ``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep at once
  fgvc           fgvc's policy (``fgvc.cli.threads.thread_policy``): 1,000 spins, then sleep
  one-thread     a single torch thread, no barrier at all

    python benchmarks/busy_machine.py [--data ~/.cache/fgvc/synthetic] [--repeats 3] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = ("torch-default", "passive", "fgvc", "one-thread")
SPIN = "while True: pass"


def child(args: argparse.Namespace) -> None:
    """One policy, one condition: print the medians of fgvc's and the bare loop's epoch seconds."""
    if args.policy == "fgvc":
        from fgvc.cli.threads import thread_policy
        thread_policy()
    elif args.policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch
    import torch.nn.functional as F

    from fgvc.config import build_config
    from fgvc.data.synthetic import SynthOptions, write_benchmark
    from fgvc.engine.metrics_log import MetricsLog
    from fgvc.engine.trainer import Trainer, TrainState

    if args.policy == "one-thread":
        torch.set_num_threads(1)
    write_benchmark(args.data, SynthOptions())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config({
            "name": "busy", "output_dir": tmp, "seed": 0,
            "data": {"format": "inat2021", "root": str(Path(args.data) / "inat"), "train_split": "train",
                     "image_size": 64, "min_scale": 0.35, "batch_size": 32, "num_workers": 0,
                     "val_fraction": 0.1},
            "model": {"backbone": "test_resnet"}, "schedule": {"epochs": 10, "warmup_epochs": 1},
            "train": {"progress": False, "device": "cpu", "limit_train_batches": args.steps}})
        trainer = Trainer(cfg)
        trainer.metrics = MetricsLog(cfg.run_dir)

        def fgvc_epoch() -> float:
            trainer.state = TrainState()
            start = time.perf_counter()
            trainer.train_one_epoch()
            return time.perf_counter() - start

        def bare_epoch() -> float:
            model, opt, loader = trainer.model, trainer.optimizer, trainer.train_loader
            loader.sampler.set_epoch(0)
            model.train()
            start = time.perf_counter()
            for step, batch in enumerate(loader):
                if step >= trainer.steps_per_epoch:
                    break
                loss = F.cross_entropy(model(batch["image"]), batch["label"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss.item()
            return time.perf_counter() - start

        fgvc_epoch()  # warm-up: allocator, kernels, file cache
        ours, bare = [], []
        for i in range(args.repeats):  # alternate which goes first
            if i % 2:
                bare.append(bare_epoch())
            ours.append(fgvc_epoch())
            if not i % 2:
                bare.append(bare_epoch())
        trainer.metrics.close()
    print(json.dumps({"fgvc": statistics.median(ours), "bare": statistics.median(bare),
                      "threads": torch.get_num_threads(), "images": trainer.steps_per_epoch * 32}))


def measure(policy: str, busy: bool, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    competitor = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        command = [sys.executable, __file__, "--child", "--policy", policy, "--data", args.data,
                   "--repeats", str(args.repeats)] + (["--steps", str(args.steps)] if args.steps else [])
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path.home() / ".cache" / "fgvc" / "synthetic"),
                        help="the demo's synthetic benchmark (written if absent)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per condition (median)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per epoch (default: all)")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    cores = os.cpu_count() or 1
    print(f"{cores} cores, one competing process spinning on one core; fair share of the cores left: "
          f"{cores / max(cores - 1, 1):.2f}x slower")
    print(f"{'policy':<14} {'threads':>7} {'quiet s':>8} {'busy s':>8} {'busy/quiet':>10} "
          f"{'bare quiet':>10} {'bare busy':>9} {'bare b/q':>8} {'fgvc/bare':>9}")
    for policy in args.policies:
        quiet, busy = measure(policy, False, args), measure(policy, True, args)
        print(f"{policy:<14} {quiet['threads']:>7} {quiet['fgvc']:>8.2f} {busy['fgvc']:>8.2f} "
              f"{busy['fgvc'] / quiet['fgvc']:>10.2f} {quiet['bare']:>10.2f} {busy['bare']:>9.2f} "
              f"{busy['bare'] / quiet['bare']:>8.2f} {quiet['fgvc'] / quiet['bare']:>9.2f}", flush=True)
    print(f"(an epoch = {quiet['images']} images; medians of {args.repeats} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
