"""Per-epoch checkpoints (train.keep_epoch_checkpoints) and the transferability analysis over them."""

from __future__ import annotations

import torch
from conftest import tiny_config

from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.trainer import Trainer


def test_epoch_checkpoints_hold_init_and_every_epoch(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, train={"keep_epoch_checkpoints": True})
    init = {k: v.clone() for k, v in Trainer(cfg).model.state_dict().items()}  # same seed: same init
    Trainer(cfg).fit()
    ckpts = cfg.run_dir / "checkpoints"
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
