"""``fgvc pretrain``: the demo backbone trained offline on a large synthetic upstream set.

All four papers fine-tune ImageNet-pretrained networks, and no pretrained weight can be downloaded
here. The upstream set plays ImageNet's part: the synthetic benchmark written with its own master
seed and many more genera — the same five visual worlds (insects, birds, cars, aircraft, flowers), as
ImageNet holds animals, vehicles and plants, but every genus and species drawn from keys no
downstream benchmark of another seed uses, so none of them is a downstream class. One image-only model
learns all of their species at once (one label space, every batch balanced over the five sets); its
backbone without the classifier is saved as safetensors, with the command and the settings in the
file's metadata.

Bit for bit: training runs in deterministic mode with a fixed thread count and no loader worker, the
data are the benchmark's deterministic bytes, and the metadata holds no path or time, so the same
command writes the same file on the same kind of machine (CPU type, torch and timm versions). The
shipped file (``fgvc/models/weights/``, ``model.pretrained=synthetic``) was written this way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from fgvc.checkpoint import load_checkpoint
from fgvc.config import Config, build_config
from fgvc.data.synthetic import SynthOptions, write_benchmark
from fgvc.engine.run import train_and_report

log = logging.getLogger(__name__)

UPSTREAM_SEED = 1_000_003  # the downstream benchmarks use other seeds (the demo: 0)
PRETRAIN_EPOCHS = 12


@dataclass(frozen=True)
class PretrainSettings:
    """What ``fgvc pretrain`` may vary; each field is one of its options."""

    backbone: str = "test_resnet"
    epochs: int = PRETRAIN_EPOCHS
    seed: int = 0
    threads: int = 2  # part of the result: a reduction split over other thread counts rounds differently
    tiny: bool = False  # a tiny upstream set (32 px): checks the command and its reproducibility in seconds

    def command(self) -> str:
        """The command line that reproduces these settings."""
        return (f"fgvc pretrain --backbone {self.backbone} --epochs {self.epochs} --seed {self.seed} "
                f"--threads {self.threads}" + (" --tiny" if self.tiny else ""))


def upstream_options(tiny: bool = False) -> SynthOptions:
    """The upstream set: 128 insect species and 120 species in each of the four other domains, about
    5,000 training images per domain at 64 px (tiny: 4 + 4 x 4 species, 32 px)."""
    if tiny:
        return SynthOptions(seed=UPSTREAM_SEED, size=32, genera=2, species_per_genus=2, train_per_class=6,
                            train_mini_per_class=0, val_per_class=1, domain_genera=2,
                            domain_species_per_genus=2, domain_images_per_class=8, domain_test_fraction=0.15)
    return SynthOptions(seed=UPSTREAM_SEED, genera=32, species_per_genus=4, train_per_class=40,
                        train_mini_per_class=0, val_per_class=1, domain_genera=40, domain_species_per_genus=3,
                        domain_images_per_class=44, domain_test_fraction=0.05)


def upstream_config(summary: dict, data_dir: Path, out_dir: Path, settings: PretrainSettings) -> Config:
    """One image-only model on the five sets of the upstream benchmark (``summary``: its synth.json)."""
    sources = [{"format": summary["inat"]["format"], "root": str(data_dir / "inat"), "train_split": "train"}]
    sources += [{"format": d["format"], "root": str(data_dir / "multi" / d["root"])}
                for d in summary["multi"]["domains"].values()]
    size, epochs = summary["options"]["size"], settings.epochs
    return build_config({
        "name": "pretrain", "seed": settings.seed, "output_dir": str(out_dir),
        "data": {"joint": sources, "image_size": size, "min_scale": 0.35, "num_workers": 0,
                 "batch_size": 10 if settings.tiny else 80, "val_fraction": 0.2 if settings.tiny else 0.05},
        "model": {"backbone": settings.backbone, "pretrained": None},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
        "schedule": {"epochs": epochs, "warmup_epochs": 1 if epochs > 1 else 0, "min_lr_factor": 0.0},
        "train": {"label_smoothing": 0.1, "deterministic": True},
    })


def pretrain(data_dir: Path, out_dir: Path, settings: PretrainSettings = PretrainSettings()) -> Path:
    """Write the upstream set (cached), train on it, save the backbone; returns the weights file."""
    previous = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        summary = write_benchmark(data_dir, upstream_options(settings.tiny))
        cfg = upstream_config(summary, data_dir, out_dir, settings)
        report = train_and_report(cfg, overwrite=True)
    finally:
        torch.set_num_threads(previous)
    path = out_dir / f"{settings.backbone}-synthetic.safetensors"
    classes = summary["inat"]["classes"] + sum(d["classes"] for d in summary["multi"]["domains"].values())
    about = {"command": settings.command(), "settings": dataclasses.asdict(settings),
             "upstream": summary["options"], "upstream_classes": classes, "image_size": cfg.data.image_size,
             "best_epoch": report["best_epoch"], "upstream_val_top1": round(report["best_val_top1"], 4),
             "upstream_test_top1": round(report["test"]["top1"], 4), "torch": torch.__version__,
             "timm": timm.__version__}
    save_backbone(cfg.run_dir / "checkpoints" / "best.pt", path, about)
    log.info("pretrained backbone: %s (sha256 %s)", path, sha256(path))
    return path


def save_backbone(checkpoint: Path, path: Path, about: dict) -> None:
    """The checkpoint's backbone tensors under timm's own names, classifier dropped; ``about`` goes into
    the metadata as one JSON string (several safetensors metadata keys are written in no fixed order)."""
    model = load_checkpoint(checkpoint)["model"]
    backbone = {k.removeprefix("backbone.body."): v.contiguous() for k, v in model.items()
                if k.startswith("backbone.body.")}
    tmp = path.with_suffix(".tmp")
    save_file(backbone, str(tmp), metadata={"fgvc": json.dumps(about, sort_keys=True)})
    tmp.replace(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

