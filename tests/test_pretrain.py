"""`fgvc pretrain`: the synthetic-upstream backbone, reproducible bit for bit, and the shipped weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fgvc.cli.experiments import PRETRAIN_EPOCHS as CLI_EPOCHS
from fgvc.data.synthetic import SynthOptions
from fgvc.errors import FgvcError
from fgvc.experiments.pretrain import PRETRAIN_EPOCHS, UPSTREAM_SEED, PretrainSettings, pretrain, upstream_options
from fgvc.models.backbones import Backbone

TINY = PretrainSettings(epochs=1, tiny=True)


def _about(path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["fgvc"])


def test_tiny_pretraining_writes_the_same_bytes_twice(tmp_path):
    first = pretrain(tmp_path / "data", tmp_path / "a", TINY)
    second = pretrain(tmp_path / "data", tmp_path / "b", TINY)  # the cached upstream set, a fresh run
    assert first.read_bytes() == second.read_bytes()
    about = _about(first)
    assert about["command"] == "fgvc pretrain --backbone test_resnet --epochs 1 --seed 0 --threads 2 --tiny"
    assert about["upstream"]["seed"] == UPSTREAM_SEED and about["upstream_classes"] == 20
    weights = load_file(str(first))
    assert not any(k.startswith(("fc.", "head")) for k in weights)  # the classifier is not part of it
    backbone = Backbone("test_resnet", str(first), announce=False)  # loads by timm's own names
    own = backbone.body.state_dict()
    assert set(own) == set(weights) and all(torch.equal(own[k], weights[k]) for k in own)


def test_upstream_classes_are_not_downstream_classes():
    assert upstream_options().seed != SynthOptions().seed  # every genus is drawn from its own seed's keys
    assert upstream_options().size == SynthOptions().size


def test_command_line_default_matches():
    assert CLI_EPOCHS == PRETRAIN_EPOCHS


def test_synthetic_start_without_shipped_weights_says_how_to_make_them():
    with pytest.raises(FgvcError, match="no shipped weights for 'resnet18'.*fgvc pretrain --backbone resnet18"):
        Backbone("resnet18", "synthetic")


def test_the_shipped_weights_name_the_command_that_made_them():
    from fgvc.models.backbones import shipped_weights

    path = shipped_weights("test_resnet")
    about = _about(path)
    assert about["command"] == PretrainSettings().command()  # fgvc pretrain with its defaults
    assert about["upstream"]["seed"] == UPSTREAM_SEED and about["upstream_classes"] == 608
    weights = load_file(str(path))
    own = Backbone("test_resnet", "synthetic", announce=False).body.state_dict()
    assert set(own) == set(weights) and all(torch.equal(own[k], weights[k]) for k in own)
