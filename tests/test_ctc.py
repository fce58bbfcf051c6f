"""Contrastive temporal coding: the NCE loss, memory banks, the frozen snapshot, stages and exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

from fgvc.checkpoint import load_checkpoint
from fgvc.config import build_config
from fgvc.engine.trainer import Trainer
from fgvc.errors import ConfigError
from fgvc.methods.ctc import CTC, momentum_update, nce_loss, switch_epoch

CTC_METHOD = {"name": "ctc", "ctc_switch_epoch": 1, "ctc_negatives": 8, "ctc_dim": 16}


def ctc_config(root, out, **sections):
    sections.setdefault("method", CTC_METHOD)
    train = {"progress": False, "deterministic": True, "limit_train_batches": 2, **sections.pop("train", {})}
    return tiny_config(root, out, train=train, **sections)


def test_nce_loss_matches_the_hand_formula():
    # one sample, K = 2 noise draws, N = 4 images: K·Pn = 0.5
    scores = torch.tensor([[0.5, 0.2, 0.1]])
    expected = -(math.log(0.5 / (0.5 + 0.5)) + math.log(0.5 / (0.2 + 0.5)) + math.log(0.5 / (0.1 + 0.5)))
    assert nce_loss(scores, num_data=4).item() == pytest.approx(expected, rel=1e-5)
    # the loss is a mean over the batch
    assert nce_loss(scores.repeat(3, 1), num_data=4).item() == pytest.approx(expected, rel=1e-5)


def test_first_batch_sets_z_and_equal_scores_give_the_closed_form(folder_dataset, tmp_path):
    """A bank of identical rows makes every score equal: Z = N·exp(1/τ), P = 1/N, whatever is drawn."""
    cfg = ctc_config(folder_dataset, tmp_path, method={**CTC_METHOD, "ctc_negatives": 5})
    trainer = Trainer(cfg)
    method = trainer.method
    n, k, tau = method.num_data, method.negatives, method.instance_temperature
    method.bank.zero_()[:, 0] = 1
    v = torch.zeros(3, method.bank.shape[1])
    v[:, 0] = 1
    loss = method.contrast(v, method.bank, torch.tensor([0, 1, 2]), tau, 0)
    assert method.z[0].item() == pytest.approx(n * math.exp(1 / tau), rel=1e-5)
    expected = -(math.log(1 / (1 + k)) + k * math.log(k / (1 + k)))
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_momentum_update_mixes_and_renormalises_only_the_batch_rows():
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    momentum_update(bank, torch.tensor([1]), torch.tensor([[0.0, 1.0]]), momentum=0.5)
    s = 1 / math.sqrt(2)
    assert torch.allclose(bank, torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]]))


def test_negatives_are_clamped_and_switch_defaults_to_two_thirds(folder_dataset, tmp_path):
    cfg = ctc_config(folder_dataset, tmp_path, method={"name": "ctc"}, schedule={"epochs": 30})
    trainer = Trainer(cfg)
    assert trainer.method.negatives == len(trainer.train_set) - 1
    assert switch_epoch(cfg) == 20
    assert trainer.method.bank.shape == (len(trainer.train_set), 128)


def test_ctc_needs_an_image_only_linear_head_and_no_mixing(folder_dataset, tmp_path):
    with pytest.raises(ConfigError, match="model.head=linear and model.fusion.name=none"):
        build_config({"data": {"format": "folder", "root": str(folder_dataset), "metadata": ["geo"]},
                      "method": {"name": "ctc"}, "model": {"fusion": {"name": "concat"}}})
    with pytest.raises(ConfigError, match="train.mixup_alpha=0"):
        build_config({"data": {"format": "folder", "root": str(folder_dataset)},
                      "method": {"name": "ctc"}, "train": {"cutmix_alpha": 1.0}})


def test_snapshot_is_frozen_and_stage_two_trains_the_model_only(folder_dataset, tmp_path):
    trainer = Trainer(ctc_config(folder_dataset, tmp_path))
    method, model, optimizer = trainer.method, trainer.model, trainer.optimizer
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert "method" in groups and len(groups["method"]["params"]) == 4  # two heads' weight and bias
    trainer.train_one_epoch()  # epoch 0: stage 1
    assert method.snapshot is None
    assert all(g["weight_decay"] == pytest.approx(2 * 1e-4) for g in optimizer.param_groups)
    assert method.z[0] > 0 and (method.z[1:] < 0).all()
    trainer.state.start_epoch()

    method.on_epoch_start(model, 1, optimizer, trainer.train_loader)  # the switch
    snapshot = method.snapshot
    assert not snapshot.training and all(not p.requires_grad for p in snapshot.parameters())
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in snapshot.parameters()}
    assert all(g["weight_decay"] == pytest.approx(1e-4) for g in optimizer.param_groups)
    before = {k: v.clone() for k, v in snapshot.state_dict().items()}
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v), k  # the snapshot is the model at the switch
    head_before = method.embed_snapshot.weight.clone()

    model.train()
    batch = next(iter(trainer.train_loader))
    trainer.train_step(batch)
    assert all(p.grad is None for p in snapshot.parameters())
    for k, v in snapshot.state_dict().items():
        assert torch.equal(before[k], v), k
    assert not torch.equal(model.head[-1].weight, before["head.0.weight"])
    assert not torch.equal(method.embed_snapshot.weight, head_before)  # the snapshot's head does learn
    assert (method.z > 0).all()
    method.train()
    assert not snapshot.training  # stays in eval mode


class Stop(Exception):
    pass


def run_until(cfg, epochs_done: int) -> None:
    """Train ``epochs_done`` epochs of a longer schedule, then stop as a killed run would."""
    trainer = Trainer(cfg)
    original, calls = trainer.train_one_epoch, {"n": 0}

    def stopping():
        if calls["n"] == epochs_done:
            raise Stop
        calls["n"] += 1
        return original()

    trainer.train_one_epoch = stopping
    with pytest.raises(Stop):
        trainer.fit()


@pytest.mark.parametrize("refresh", [True, False])
def test_stage_switch_survives_resume_exactly(folder_dataset, tmp_path, refresh):
    over = {"schedule": {"epochs": 3, "warmup_epochs": 0.5}, "method": {**CTC_METHOD, "ctc_refresh_bank": refresh}}
    reference = ctc_config(folder_dataset, tmp_path / "ref", **over)
    Trainer(reference).fit()
    ref = load_checkpoint(reference.run_dir / "checkpoints" / "last.pt")
    assert any(k.startswith("snapshot.") for k in ref["method"])

    for stop_after in (1, 2):  # at the switch (stage 1 saved), and inside stage 2 (snapshot saved)
        out = tmp_path / f"stopped{stop_after}"
        run_until(ctc_config(folder_dataset, out, **over), stop_after)
        saved = load_checkpoint(out / "tiny" / "checkpoints" / "last.pt")
        assert saved["state"]["epoch"] == stop_after
        assert any(k.startswith("snapshot.") for k in saved["method"]) == (stop_after > 1)
        resumed = ctc_config(folder_dataset, out, train={"resume": True}, **over)
        Trainer(resumed).fit()
        got = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
        for part in ("model", "method"):
            assert ref[part].keys() == got[part].keys()
            for key in ref[part]:
                assert torch.equal(ref[part][key], got[part][key]), (stop_after, part, key)


def test_predict_needs_no_training_state(folder_dataset, tmp_path):
    cfg = ctc_config(folder_dataset, tmp_path)
    method = CTC(cfg, 3)  # as evaluation builds it: no heads, no banks
    assert not list(method.parameters()) and not list(method.buffers())
    trainer = Trainer(cfg)
    batch = next(iter(trainer.val_loader))
    assert method.predict(trainer.model.eval(), batch).shape == (len(batch["label"]), 3)
