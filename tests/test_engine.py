"""Training engine on tiny real runs: end to end, resume after SIGKILL, NaN stop, bad images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_tree, write_folder_dataset

from fgvc.checkpoint import load_checkpoint
from fgvc.cli import main
from fgvc.engine.run import train_and_report
from fgvc.engine.schedule import warmup_cosine
from fgvc.engine.trainer import Trainer
from fgvc.errors import DataError, FgvcError


def test_train_and_evaluate_end_to_end(folder_dataset, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_tree(folder_dataset, tmp_path / "runs")))
    assert main(["-q", "train", str(cfg_path), "schedule.epochs=3"]) == 0
    run = tmp_path / "runs" / "tiny"
    for name in ("config.yaml", "metrics.csv", "metrics.jsonl", "report.md", "report.json", "curves.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert report["test"]["num_samples"] == 12  # 3 classes x 4 test images, each counted once
    assert len(report["epochs"]) == 3
    assert report["protocol"]["splits"]["val"].startswith("stratified hold-out")
    assert report["test"]["top1"] > 100 / 3  # colour classes: well above chance after 3 epochs
    assert list(run.glob("tensorboard/events.out.tfevents.*"))
    # the saved config is the resolved one, with the override applied
    assert yaml.safe_load((run / "config.yaml").read_text())["schedule"]["epochs"] == 3
    # evaluate the best checkpoint again from the CLI: same figure
    capsys.readouterr()
    assert main(["-q", "evaluate", str(cfg_path), f"checkpoint={run / 'checkpoints' / 'best.pt'}"]) == 0
    assert f"top-1 {report['test']['top1']:.2f}" in capsys.readouterr().out
    # a second train without resume must not clobber the run
    assert main(["-q", "train", str(cfg_path)]) == 2


def test_best_checkpoint_is_chosen_on_validation(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 3})
    report = train_and_report(cfg)
    rows = report["epochs"]
    best = max(range(len(rows)), key=lambda i: (rows[i]["val_top1"], -i))
    assert report["best_epoch"] == best + 1
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "best.pt")["state"]["best_epoch"] == best


def _final_weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("workers", [0, 2])
def test_killed_run_resumes_to_identical_weights(tmp_path, workers):
    data = write_folder_dataset(tmp_path / "data", classes=3, train_per_class=40, test_per_class=2)
    over = {"data": {"num_workers": workers}, "schedule": {"epochs": 3},
            "train": {"checkpoint_every_steps": 1}, "optim": {"lr": 0.05},
            }
    reference = tiny_config(data, tmp_path / "ref", **over)
    Trainer(reference).fit()

    tree = tiny_tree(data, tmp_path / "killed", **over)
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(tree))
    last = tmp_path / "killed" / "tiny" / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "fgvc", "-q", "train", str(cfg_path)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    steps_per_epoch = 90 // 4
    deadline = time.time() + 300  # generous: a loaded 2-core machine starts python slowly
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            state = load_checkpoint(last)["state"]  # atomic writes: always readable
            if state["global_step"] >= steps_per_epoch + 3:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = state
                break
        time.sleep(0.02)
    if proc.poll() is None:  # deadline passed: never leave a training process behind
        proc.kill()
        proc.wait()
    assert killed_at is not None, "the run finished (or timed out) before it could be killed"
    state = load_checkpoint(last)["state"]
    assert state["epoch"] < 3 and (state["epoch"], state["step_in_epoch"]) != (3, 0)
    resumed = tiny_config(data, tmp_path / "killed", train={"resume": True}, **{k: v for k, v in over.items()
                                                                               if k != "train"})
    resumed = resumed.model_copy(update={"train": resumed.train.model_copy(
        update={"checkpoint_every_steps": 1, "resume": True})})
    Trainer(resumed).fit()
    ref, got = _final_weights(reference.run_dir), _final_weights(resumed.run_dir)
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    # the metrics file has one row per epoch, no duplicate from the interrupted epoch
    rows = [json.loads(l) for l in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # ... and the interrupted epoch reports the same figures as the uninterrupted one
    ref_rows = [json.loads(l) for l in (reference.run_dir / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "train_top1", "val_top1", "lr"):
        assert [r[key] for r in rows] == [r[key] for r in ref_rows], key


def test_non_finite_loss_stops_with_step_and_keeps_last_good(folder_dataset, tmp_path, monkeypatch):
    from fgvc.methods.supervised import Supervised

    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 3})
    trainer = Trainer(cfg)
    calls = {"n": 0}
    original = Supervised.training_loss

    def poisoned(self, model, batch):
        loss, logits = original(self, model, batch)
        calls["n"] += 1
        return (loss * float("nan"), logits) if calls["n"] == trainer.steps_per_epoch + 2 else (loss, logits)

    monkeypatch.setattr(Supervised, "training_loss", poisoned)
    with pytest.raises(FgvcError, match=rf"epoch 2, step 2 \(global step {trainer.steps_per_epoch + 2}\)"):
        trainer.fit()
    good = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    assert good["state"]["epoch"] == 1 and good["state"]["step_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_corrupt_image_is_named_or_skipped(tmp_path, capsys, caplog):
    data = write_folder_dataset(tmp_path / "data", classes=2, train_per_class=8, test_per_class=2)
    bad = data / "train" / "class_0" / "007.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    cfg = tiny_config(data, tmp_path / "runs", data={"val_fraction": 0.25, "num_workers": 2},
                      schedule={"epochs": 1, "warmup_epochs": 0})
    with pytest.raises(DataError) as info:
        Trainer(cfg).fit()
    assert "007.png" in str(info.value)
    # from the CLI: one line naming the file, exit code 2, no traceback
    cfg_path = tmp_path / "bad.yaml"
    cfg_path.write_text(cfg.to_yaml())
    capsys.readouterr()
    assert main(["-q", "train", str(cfg_path), "name=cli", "data.val_fraction=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "007.png" in err[0] and "Traceback" not in err[0]
    # with the skip policy the run completes and counts the skip
    skip = cfg.model_copy(update={"name": "skip", "data": cfg.data.model_copy(update={"bad_images": "skip"})})
    with caplog.at_level("WARNING", logger="fgvc"):
        trainer = Trainer(skip)
        trainer.fit()
    in_train = any(s.path == str(bad) for s in trainer.splits.train)
    rows = [json.loads(l) for l in (skip.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["skipped_images"] for r in rows) == int(in_train)  # once per epoch it is drawn
    assert (bad.name in caplog.text) == in_train


def test_warmup_then_cosine():
    values = [warmup_cosine(s, total_steps=100, warmup_steps=10, warmup_factor=0.1, min_factor=0.0)
              for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[5] == pytest.approx(0.55)
    assert values[10] == pytest.approx(1.0) and values[55] == pytest.approx(0.5)
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_frozen_backbone_epochs_leave_backbone_untouched(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 1, "warmup_epochs": 0,
                                                           "freeze_backbone_epochs": 1})
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


def test_param_groups_have_their_own_learning_rates(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, optim={"lr": 0.1, "backbone_lr": 0.01, "base_batch_size": 8})
    groups = {g["name"]: g for g in Trainer(cfg).optimizer.param_groups}
    assert groups["new"]["initial_lr"] == pytest.approx(0.1 * 4 / 8)
    assert groups["backbone"]["initial_lr"] == pytest.approx(0.01 * 4 / 8)


@pytest.mark.parametrize("sections", [
    {"train": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "label_smoothing": 0.1}},
    {"train": {"grad_clip": 0.5}, "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05}},
    {"train": {"amp": True, "channels_last": True}},  # bfloat16 autocast on CPU; GradScaler only on CUDA
], ids=["mixup-cutmix", "adamw-clip", "amp-channels-last"])
def test_recipe_options_train(folder_dataset, tmp_path, sections):
    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 1, "warmup_epochs": 0}, **sections)
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    state = trainer.fit()
    assert state.epoch == 1 and state.global_step == trainer.steps_per_epoch
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def test_grad_clip_bounds_the_update(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, optim={"lr": 1.0, "momentum": 0.0, "weight_decay": 0.0},
                      schedule={"epochs": 1, "warmup_epochs": 0}, train={"grad_clip": 1e-3})
    trainer = Trainer(cfg)
    trainer.model.train()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    batch = next(iter(trainer.train_loader))
    trainer.train_step(batch)
    change = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(trainer.model.parameters(), before)))
    assert 0 < change <= 1e-3 * 1.0001  # plain SGD, lr 1: the step is the clipped gradient


def test_evaluate_keeps_the_training_report_and_writes_other_splits_beside_it(folder_dataset, tmp_path, capsys):
    cfg = tiny_config(folder_dataset, tmp_path, schedule={"epochs": 2})
    train_and_report(cfg)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(cfg.to_yaml())
    assert main(["-q", "evaluate", str(cfg_path)]) == 0  # default: the run's best.pt on test
    report = json.loads((cfg.run_dir / "report.json").read_text())
    assert len(report["epochs"]) == 2 and report["test"]["num_samples"] == 12
    assert "## Training" in (cfg.run_dir / "report.md").read_text()
    assert main(["-q", "evaluate", str(cfg_path), "split=val"]) == 0
    val = json.loads((cfg.run_dir / "report_val.json").read_text())
    assert val["protocol"]["evaluated_split"] == "val" and val["val"]["num_samples"] == 9
    assert "| val |" in (cfg.run_dir / "report_val.md").read_text()
    assert "report_val.md" in capsys.readouterr().out


def test_mixup_mixes_metadata_with_the_images(folder_dataset, tmp_path):
    import numpy as np

    from fgvc.methods.supervised import Supervised

    cfg = tiny_config(folder_dataset, tmp_path, train={"mixup_alpha": 1.0})
    method = Supervised(cfg, num_classes=3)
    seen = {}

    def model(images, meta):
        seen["images"], seen["meta"] = images, meta
        return torch.zeros(len(images), 3, requires_grad=True)

    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(4)])
    meta = torch.arange(8.0).reshape(4, 2)
    np.random.seed(0)
    method.training_loss(model, {"image": images, "label": torch.tensor([0, 1, 2, 0]), "meta": meta})
    lam = 1 - seen["images"][0, 0, 0, 0].item() / 3  # image 0 mixed with image 3 (values 0 and 3)
    assert 0 < lam < 1
    assert torch.allclose(seen["meta"], lam * meta + (1 - lam) * meta.flip(0))
    assert torch.equal(images[1], torch.full((3, 4, 4), 1.0))  # the caller's batch is not modified
