"""Per-epoch checkpoints (train.keep_epoch_checkpoints) and the transferability analysis over them."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config, tiny_tree, write_folder_dataset

from fgvc.analysis.transfer import ProbeSettings, analyse_transfer, linear_probe
from fgvc.checkpoint import load_checkpoint
from fgvc.cli import main
from fgvc.engine.trainer import Trainer
from fgvc.errors import FgvcError


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder_dataset):
    """A 2-epoch test_resnet run with epoch checkpoints, and its untrained weights (same seed)."""
    cfg = tiny_config(folder_dataset, tmp_path_factory.mktemp("runs"), train={"keep_epoch_checkpoints": True})
    init = {k: v.clone() for k, v in Trainer(cfg).model.state_dict().items()}
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "config.yaml").write_text(cfg.to_yaml())  # as `fgvc train` writes it
    Trainer(cfg).fit()
    return cfg.run_dir, init


@pytest.fixture(scope="module")
def target_config(tmp_path_factory):
    """A different 4-class colour dataset (a yellow class the source never saw) as the probe's target."""
    base = tmp_path_factory.mktemp("target")
    root = write_folder_dataset(base / "data", classes=4, train_per_class=10, test_per_class=5, seed=7)
    path = base / "target.yaml"
    path.write_text(yaml.safe_dump(tiny_tree(root, base / "runs", name="target")))
    return path


def test_epoch_checkpoints_hold_init_and_every_epoch(trained):
    run, init = trained
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("epoch_*.pt")) == ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt"]
    first, last = load_checkpoint(ckpts / "epoch_000.pt"), load_checkpoint(ckpts / "epoch_002.pt")
    assert set(first) == set(load_checkpoint(ckpts / "best.pt")) >= {"model", "config", "classes", "groups"}
    assert all(torch.equal(init[k], first["model"][k]) for k in init)  # epoch 0 = the untrained weights
    final = load_checkpoint(ckpts / "last.pt")["model"]
    assert all(torch.equal(final[k], last["model"][k]) for k in final)  # epoch 2 = the end of training
    assert not all(torch.equal(init[k], final[k]) for k in init)
    assert [load_checkpoint(ckpts / f"epoch_00{e}.pt")["state"]["epoch"] for e in range(3)] == [0, 1, 2]


def test_epoch_checkpoints_are_off_by_default(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 1})
    Trainer(cfg).fit()
    assert not list((cfg.run_dir / "checkpoints").glob("epoch_*.pt"))


def test_linear_probe_separates_what_is_separable_and_no_more():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))
    labels = np.repeat(np.arange(4), 30)
    feats = centres[labels] + rng.normal(0, 1, (120, 16))
    train, test = (feats[::2], labels[::2]), (feats[1::2], labels[1::2])
    assert linear_probe(train, test, ProbeSettings()) > 95
    shuffled = rng.permutation(labels)  # labels unrelated to the features: chance (25 %) or so
    assert linear_probe((feats[::2], shuffled[::2]), (feats[1::2], shuffled[1::2]), ProbeSettings()) < 50
    assert linear_probe(train, test, ProbeSettings(seed=1)) == linear_probe(train, test, ProbeSettings())


def test_transfer_rows_files_and_accuracies(trained, target_config, tmp_path):
    run, _ = trained
    result = analyse_transfer([run], target_config, tmp_path / "out", progress=False)
    rows = result["rows"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # the source figure is the checkpoint's own classifier on the run's test split: trained, it beats chance
    assert rows[-1]["source_top1"] > 100 / 3
    # the target's colour classes are linearly separable in any of these backbones' features: far above
    # the 25 % of chance, at init as after training
    assert min(r["target_top1"] for r in rows) >= 70
    assert result["target"]["counts"]["test"] == 20 and result["target"]["classes"] == 4
    with (tmp_path / "out" / "transfer.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in table] == [0, 1, 2]
    assert float(table[1]["target_top1"]) == pytest.approx(rows[1]["target_top1"])
    assert json.loads((tmp_path / "out" / "transfer.json").read_text())["rows"] == rows
    assert (tmp_path / "out" / "transfer.png").stat().st_size > 10_000


def test_cli_two_runs_side_by_side_and_max_train(trained, target_config, tmp_path, capsys):
    run, _ = trained
    other = tmp_path / "ctc"
    shutil.copytree(run, other)
    out = tmp_path / "both"
    code = main(["-q", "analyze", "transfer", str(run), str(other), "--target", str(target_config),
                 "--out", str(out), "--max-train", "12", "--target-set", "data.image_size=24"])
    assert code == 0 and "transfer.png" in capsys.readouterr().out
    result = json.loads((out / "transfer.json").read_text())
    assert [(r["run"], r["epoch"]) for r in result["rows"]] == [(run.name, e) for e in range(3)] + \
        [("ctc", e) for e in range(3)]
    assert result["target"]["counts"]["train"] == 12 and result["probe"]["max_train"] == 12
    assert result["target"]["image_size"] == 24 and result["target"]["overrides"] == ["data.image_size=24"]
    # same weights, same target subset, same probe seed: the copied run's figures are identical
    first, second = result["rows"][:3], result["rows"][3:]
    assert [(r["source_top1"], r["target_top1"]) for r in first] == [(r["source_top1"], r["target_top1"])
                                                                      for r in second]


def test_run_without_epoch_checkpoints_says_how_to_get_them(folder_dataset, target_config, tmp_path, capsys):
    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 1})
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    with pytest.raises(FgvcError, match="train.keep_epoch_checkpoints=true"):
        analyse_transfer([cfg.run_dir], target_config, tmp_path / "out", progress=False)
    assert main(["-q", "analyze", "transfer", str(cfg.run_dir), "--target", str(target_config)]) == 2
    assert "keep_epoch_checkpoints" in capsys.readouterr().err
