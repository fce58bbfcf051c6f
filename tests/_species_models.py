"""Tiny trained models for the species-identification tests (predict, serve, the page): a synthetic
iNat-2021 set (taxonomy, locations, dates) written to disk, an image-only model, a Dynamic MLP model
and a PriorsNet run on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import tiny_config

from fgvc.data.synthetic import SynthOptions, write_inat

OPTIONS = SynthOptions(size=32, genera=2, species_per_genus=2, train_per_class=12, train_mini_per_class=4,
                       val_per_class=3, missing_metadata_fraction=0.0)


@dataclass
class DeployModels:
    data: Path  # the iNat-2021 folder
    image_only: Path  # best.pt of an image-only run
    dynamic_mlp: Path  # best.pt of a Dynamic MLP-C run (geo + temporal)
    prior_run: Path  # a run folder holding checkpoints/priors.pt


def train_deploy_models(root: Path) -> DeployModels:
    from fgvc.data.splits import prepare_splits
    from fgvc.engine.trainer import Trainer
    from fgvc.methods.priors import save_priors, train_priors

    data = root / "inat"
    write_inat(data, OPTIONS)
    common = {"data": {"format": "inat2021", "root": str(data), "train_split": "train", "image_size": 32,
                       "batch_size": 8, "val_fraction": 0.2},
              "schedule": {"epochs": 1, "warmup_epochs": 0}}
    runs = {}
    for name, metadata, fusion in (("image_only", [], "none"), ("dynamic_mlp", ["geo", "temporal"], "dynamic_mlp")):
        cfg = tiny_config(data, root / "runs", name=name, data={**common["data"], "metadata": metadata},
                          model={"backbone": "test_resnet", "fusion": {"name": fusion, "d": 16, "h": 8}},
                          schedule=common["schedule"])
        Trainer(cfg).fit()
        runs[name] = cfg.run_dir / "checkpoints" / "best.pt"
    cfg = tiny_config(data, root / "runs", data={**common["data"], "metadata": ["geo", "temporal"]})
    splits = prepare_splits(cfg.data)
    prior = train_priors(splits.train, len(splits.classes), ("geo", "temporal"), epochs=5, batch_size=16,
                         width=16, n_res=1, classes=splits.classes, progress=False)
    prior_run = root / "runs" / "prior"
    save_priors(prior, prior_run / "checkpoints" / "priors.pt")
    return DeployModels(data, runs["image_only"], runs["dynamic_mlp"], prior_run)
