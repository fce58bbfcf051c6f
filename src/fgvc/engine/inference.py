"""A trained checkpoint ready for evaluation: its model, its method's prediction rule, and loaders.

Evaluation, test-time augmentation, the analyses and the erudite protocol all start here: the model is
rebuilt from the checkpoint's own config (the run's config supplies data, device and precision), and
the data config is the run's with the metadata the model reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from fgvc.checkpoint import load_checkpoint
from fgvc.config import Config, DataConfig, build_config
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.records import Sample
from fgvc.data.splits import prepare_splits
from fgvc.engine.distributed import init_distributed
from fgvc.engine.evaluate import predict_loader
from fgvc.engine.trainer import resolve_device
from fgvc.errors import FgvcError
from fgvc.methods import build_method
from fgvc.models import build_model

log = logging.getLogger(__name__)


class LoadedModel(NamedTuple):
    """What ``load_for_eval`` returns; ``data`` is the run's data config reading the model's metadata."""

    checkpoint: dict
    model: nn.Module
    method: object  # the method's ``predict`` gives the prediction rules
    data: DataConfig
    device: torch.device


def model_from_checkpoint(ckpt: dict, num_classes: int,
                          cfg: Config | None = None) -> tuple[Config, nn.Module]:
    """The model a checkpoint was trained as — from its own config, else ``cfg`` — with its weights."""
    model_cfg = build_config(ckpt["config"]) if ckpt.get("config") else cfg
    if model_cfg is None:
        raise ValueError("the checkpoint holds no config: pass the one it was trained with")
    model = build_model(model_cfg, num_classes, load_pretrained=False, groups=ckpt.get("groups"))
    model.load_state_dict(ckpt["model"])
    return model_cfg, model


def load_for_eval(cfg: Config, checkpoint: str | Path, classes: Sequence[str],
                  ckpt: dict | None = None) -> LoadedModel:
    """The checkpoint's model on the config's device (this process's GPU under ``torchrun``), its method
    and the data config it reads; ``classes`` are the dataset's, which the checkpoint's must equal.
    ``ckpt``: the checkpoint's contents when already read from another format (a hub folder)."""
    ckpt = load_checkpoint(checkpoint) if ckpt is None else ckpt
    if ckpt.get("classes") and list(ckpt["classes"]) != list(classes):
        raise FgvcError(f"{checkpoint}: trained on {len(ckpt['classes'])} classes of "
                        f"'{ckpt.get('dataset')}', not the {len(classes)} classes of this dataset")
    device = init_distributed(cfg.train.device).local_device(resolve_device(cfg.train.device))
    model_cfg, model = model_from_checkpoint(ckpt, len(classes), cfg)
    model.to(device)
    log.info("model weights: %s (epoch %s)", checkpoint, (ckpt.get("state") or {}).get("epoch", "?"))
    data_cfg = cfg.data.model_copy(update={"metadata": model_cfg.data.metadata})  # what the model reads
    return LoadedModel(ckpt, model, build_method(model_cfg, len(classes)), data_cfg, device)


def eval_loader(data_cfg: DataConfig, samples: Sequence[Sample], rank: int = 0, world_size: int = 1) -> DataLoader:
    """``samples`` in order through the evaluation transform (under DDP, this rank's strided slice)."""
    dataset = make_dataset(data_cfg, samples, train=False)
    return make_loader(data_cfg, dataset, train=False, rank=rank, world_size=world_size)


def predict_split(cfg: Config, checkpoint: str | Path, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's primary logits ``[N, C]`` and the labels on one split, in the split's order."""
    splits = prepare_splits(cfg.data)
    loaded = load_for_eval(cfg, checkpoint, splits.classes)
    loader = eval_loader(loaded.data, splits.samples(split))
    return predict_loader(loaded.model, loaded.method, loader, loaded.device, progress=cfg.train.progress)
