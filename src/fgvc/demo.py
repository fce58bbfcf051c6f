"""``fgvc demo``: the synthetic benchmark, an image-only baseline trained on the CPU, a report.

The benchmark is written once into a cache folder (iNat-2021 layout) and read back through the
same reader real data uses. The baseline is a randomly initialised ResNet-10-T at 64 px — no
pretrained weights can be downloaded here — trained on ``train`` minus a stratified hold-out (model
selection) and tested once on ``val`` (iNaturalist's public evaluation split).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fgvc.analysis.report import markdown_table
from fgvc.config import Config, build_config
from fgvc.data.synthetic import SynthOptions, write_benchmark
from fgvc.engine.run import train_and_report

log = logging.getLogger(__name__)

DEMO_EPOCHS = 15


def demo_config(data_dir: Path, out_dir: Path, epochs: int, quick: bool) -> Config:
    return build_config({
        "name": "image_only", "seed": 0, "output_dir": str(out_dir),
        "data": {"format": "inat2021", "root": str(data_dir / "inat"), "train_split": "train",
                 "image_size": 64, "min_scale": 0.35, "batch_size": 32, "num_workers": 2,
                 "val_fraction": 0.1},
        "model": {"backbone": "test_resnet" if quick else "resnet10t"},
        "optim": {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4},
        "schedule": {"epochs": epochs, "warmup_epochs": min(1, epochs - 1) if epochs > 1 else 0},
        "train": {"label_smoothing": 0.1, "limit_train_batches": 2 if quick else None},
    })


def run_demo(data_dir: Path, out_dir: Path, epochs: int | None = None, quick: bool = False) -> dict:
    start = time.perf_counter()
    summary = write_benchmark(data_dir, SynthOptions())
    log.info("synthetic benchmark in %s (%s)", data_dir, summary.get("inat", summary))
    cfg = demo_config(data_dir, out_dir, epochs or (1 if quick else DEMO_EPOCHS), quick)
    report = train_and_report(cfg, overwrite=True)
    row = {"model": f"image-only {cfg.model.backbone}", "metadata": "none",
           "test top-1": report["test"]["top1"], "test top-5": report["test"]["top5"],
           "best val top-1": report["best_val_top1"], "epochs": cfg.schedule.epochs,
           "minutes": (time.perf_counter() - start) / 60}
    table = markdown_table([row])
    n_classes = len(report["test"]["per_class"])
    lines = ["# fgvc demo: synthetic fine-grained benchmark", "",
             f"{n_classes} species in genera of look-alikes (iNat-2021 layout, {data_dir / 'inat'}); "
             f"test = the official `val` split, evaluated once on the checkpoint with the best hold-out "
             "validation accuracy. Chance is "
             f"{100 / n_classes:.1f} % top-1.", "", table, "",
             f"Run details, curves and per-class results: [{cfg.name}/report.md]({cfg.name}/report.md)", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text("\n".join(lines))
    print("\n" + table + "\n")
    print(f"demo report: {out_dir / 'report.md'}")
    return report
