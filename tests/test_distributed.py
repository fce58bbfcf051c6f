"""Data-parallel training under ``torchrun`` with two CPU processes (gloo), against one process.

The equality test uses ``test_convnext`` (LayerNorm, no BatchNorm): with BatchNorm each rank
normalises by its own half of the batch, so two processes and one differ by design unless
``train.sync_bn`` — and PyTorch's SyncBatchNorm runs on GPUs only. Without BatchNorm, the same
global batch (4 per process × 2 = 8), the same samples with the same augmentation seeds and the
averaged gradients make both runs equal up to float summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_tree, write_folder_dataset

from fgvc.checkpoint import load_checkpoint
from fgvc.engine.distributed import DistContext, find_unused_parameters
from fgvc.engine.run import evaluate_checkpoint
from fgvc.engine.schedule import warmup_cosine
from fgvc.engine.trainer import Trainer

SRC = Path(__file__).parents[1] / "src"


def torchrun(tmp_path: Path, tree: dict, *overrides: str, nproc: int = 2) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m fgvc train`` on ``tree``; fails with both ranks' output."""
    cfg_path = tmp_path / f"{tree['name']}.yaml"
    cfg_path.write_text(yaml.safe_dump(tree))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "fgvc", "-q", "train", str(cfg_path), *overrides]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    # 3 classes x 12 train images, a 25 % hold-out: 27 train, 9 val; 9 test images (odd: 2 ranks share unevenly)
    data = write_folder_dataset(tmp_path / "data", classes=3, train_per_class=12, test_per_class=3)
    sections = {"model": {"backbone": "test_convnext"}, "schedule": {"epochs": 2, "warmup_epochs": 0.5},
                "train": {"device": "cpu"}}
    tree = tiny_tree(data, tmp_path / "runs", **sections)
    tree["name"] = "ddp"
    torchrun(tmp_path, tree)  # data.batch_size 4 per process

    single = tiny_config(data, tmp_path / "runs", data={"batch_size": 8}, **sections)
    single = single.model_copy(update={"name": "single"})
    Trainer(single).fit()

    ddp_dir = tmp_path / "runs" / "ddp"
    got, ref = load_checkpoint(ddp_dir / "checkpoints" / "last.pt"), load_checkpoint(single.run_dir / "checkpoints" / "last.pt")
    assert got["state"]["global_step"] == ref["state"]["global_step"] == 6  # 27 // 8 = 3 steps per epoch
    assert got["world_size"] == 2 and len(got["rng_ranks"]) == 2
    for key, value in ref["model"].items():
        torch.testing.assert_close(got["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(rows(ddp_dir), rows(single.run_dir)):
        assert a["train_samples"] == b["train_samples"] == 24  # figures reduced over both ranks
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_top1"] == b["train_top1"] and a["val_top1"] == b["val_top1"]

    # distributed evaluation: 9 test images split 5 + 4 over the ranks, each counted once
    report = json.loads((ddp_dir / "report.json").read_text())
    assert report["test"]["num_samples"] == 9
    alone = evaluate_checkpoint(single.model_copy(update={"name": "ddp"}), ddp_dir / "checkpoints" / "best.pt",
                                write=False)
    assert report["test"]["top1"] == alone["test"]["top1"] and report["test"]["top5"] == alone["test"]["top5"]
    # rank 0 alone wrote the run folder: one log, one TensorBoard stream
    assert len(list((ddp_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_run_interrupted_on_one_process_resumes_on_two(tmp_path, monkeypatch):
    # 2 classes x 16 images, a 25 % hold-out: 24 train; batch 4: 6 steps per epoch alone, 3 on two ranks
    data = write_folder_dataset(tmp_path / "data", classes=2, train_per_class=16, test_per_class=2)
    sections = {"schedule": {"epochs": 2, "warmup_epochs": 0.5}, "train": {"checkpoint_every_steps": 1}}
    cfg = tiny_config(data, tmp_path / "runs", **sections)
    calls = {"n": 0}
    original = Trainer.train_step

    def stop_after_two(self, batch):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run is killed in the middle of epoch 1
        calls["n"] += 1
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit()
    saved = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    assert saved["world_size"] == 1 and saved["state"]["position"] == 8

    tree = tiny_tree(data, tmp_path / "runs", **sections)
    torchrun(tmp_path, tree, "train.resume=true")
    final = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    # epoch 1: 2 steps alone (8 samples), then the 16 not yet drawn on two ranks (2 steps); epoch 2: 3 steps
    assert final["world_size"] == 2 and final["state"]["global_step"] == 2 + 2 + 3
    assert [r["train_samples"] for r in rows(cfg.run_dir)] == [24, 24]  # every training sample, once per epoch
    # the schedule moved to the same fraction of training: epoch 1 ends at step 3 of 3 x 2 (warm-up 2 steps)
    assert rows(cfg.run_dir)[0]["lr"] == pytest.approx(0.05 * warmup_cosine(3, 6, 2, 0.01, 0.0))


def test_single_process_gather_and_gradient_mean_pass_through():
    counts = {"logits": object()}
    assert DistContext().gather_object(counts) == [counts]
    assert DistContext().mean_gradients([None, torch.ones(2)])[1].tolist() == [1.0, 1.0]


def test_unused_parameter_search_only_where_a_method_needs_it(folder_dataset, tmp_path):
    plain = tiny_config(folder_dataset, tmp_path)
    assert not find_unused_parameters(plain)
    progressive = tiny_config(folder_dataset, tmp_path, method={"name": "progressive"},
                              model={"head": "multi_stage"})
    assert find_unused_parameters(progressive)
    frozen = tiny_config(folder_dataset, tmp_path, schedule={"freeze_backbone_epochs": 1})
    assert find_unused_parameters(frozen)


@pytest.mark.slow
def test_progressive_phases_train_under_ddp_and_a_frozen_backbone_stays_frozen(tmp_path):
    """PMG / RMG-PMSI phases: one DDP forward and backward per phase, the other stages' classifiers
    unused in each. Epoch 1 freezes the backbone: DDP must leave its gradients unset (SGD's weight
    decay and momentum would otherwise move it)."""
    data = write_folder_dataset(tmp_path / "data", classes=2, train_per_class=16, test_per_class=3)
    tree = tiny_tree(data, tmp_path / "runs", method={"name": "progressive", "augment": "rmg"},
                     model={"head": "multi_stage", "multi_stage": {"stages": 2, "hidden": 16}},
                     schedule={"epochs": 2, "warmup_epochs": 0.5, "freeze_backbone_epochs": 1},
                     train={"keep_epoch_checkpoints": True})
    torchrun(tmp_path, tree)
    run = tmp_path / "runs" / "tiny"
    assert json.loads((run / "report.json").read_text())["test"]["num_samples"] == 6
    assert [r["train_samples"] for r in rows(run)] == [24, 24]
    weights = [load_checkpoint(run / "checkpoints" / f"epoch_{e:03d}.pt")["model"] for e in range(3)]
    backbone = [k for k in weights[0] if k.startswith("backbone.") and weights[0][k].is_floating_point()]
    assert backbone and all(torch.equal(weights[0][k], weights[1][k]) for k in backbone)
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in backbone)


@pytest.mark.slow
def test_erudite_meta_step_keeps_the_replicas_equal_under_ddp(tmp_path):
    """Stage II takes θ's gradient with autograd.grad (no DDP hook): the trainer averages it itself,
    and the replica check at each epoch's end would stop the run if the ranks' weights drifted."""
    roots = [write_folder_dataset(tmp_path / name, classes=2, train_per_class=8, test_per_class=2, seed=i)
             for i, name in enumerate(("a", "b"))]
    tree = tiny_tree(roots[0], tmp_path / "runs", model={"head": "erudite", "erudite": {"expert_channels": 8, "heads": 2}},
                     method={"name": "erudite", "meta": "maml", "meta_lr": 0.5},
                     schedule={"epochs": 2, "warmup_epochs": 0.5})
    tree["data"] |= {"joint": [{"format": "folder", "root": str(r), "name": r.name} for r in roots], "root": ""}
    torchrun(tmp_path, tree)
    run = tmp_path / "runs" / "tiny"
    report = json.loads((run / "report.json").read_text())
    assert report["test"]["num_samples"] == 8 and set(report["test"]["per_dataset"]) == {"a", "b"}


def test_methods_with_their_own_state_are_refused_under_ddp(folder_dataset, tmp_path):
    from fgvc.engine.distributed import check_supported
    from fgvc.errors import FgvcError

    cfg = tiny_config(folder_dataset, tmp_path)
    with pytest.raises(FgvcError, match="does not support DDP yet"):
        check_supported(cfg, torch.nn.Linear(2, 2))  # e.g. CTC: its own heads and memory banks
    check_supported(cfg, object())  # methods without layers of their own are fine
