"""Fault injection (docs/architecture.md, Reliability): SIGKILL at chosen steps, also in the middle of a
checkpoint write, and a NaN loss, injected from outside by ``tests/_faults.py`` (no hooks in the product).

The property: a run killed at any of these points and resumed with ``train.resume=true`` ends with
weights, optimiser and RNG states bit-identical to a run never interrupted (deterministic, CPU), and
every checkpoint file on disk is loadable after every kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _faults import install
from conftest import tiny_tree, write_folder_dataset

from fgvc.checkpoint import load_checkpoint
from fgvc.cli import main

HERE = Path(__file__).parent
STEPS_PER_EPOCH = 4  # 3 classes x 8 train images, 25 % held out -> 18, batches of 4 (last dropped)


def write_config(tmp_path: Path, epochs: int, train_per_class: int = 8) -> Path:
    data = tmp_path / "data"
    if not data.exists():
        write_folder_dataset(data, classes=3, train_per_class=train_per_class, test_per_class=2, size=16)
    tree = tiny_tree(data, tmp_path / "runs", data={"image_size": 16, "num_workers": 0},
                     model={"backbone": "test_resnet", "drop_rate": 0.3},  # dropout draws random numbers
                     schedule={"epochs": epochs, "warmup_epochs": 0.5},
                     train={"checkpoint_every_steps": 1, "log_every_steps": 1})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def train_argv(config: Path, name: str, resume: bool) -> list[str]:
    """Resume, or (a run killed before its first last.pt: nothing to resume) start the run again."""
    return ["-q", "train", str(config), f"name={name}", "train.resume=true" if resume else "--overwrite"]


def run_fgvc(config: Path, name: str, faults: list[str], resume: bool) -> subprocess.CompletedProcess:
    """One ``fgvc train`` process with ``faults`` installed; returns when it exits or is killed.
    (Only runs that are to be killed need their own process: the others run in this one.)"""
    argv = train_argv(config, name, resume)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OMP_NUM_THREADS": str(torch.get_num_threads())}  # as in here
    return subprocess.run([sys.executable, str(HERE / "_faults.py"), *faults, "--", *argv], env=env,
                          capture_output=True, text=True, timeout=600)


def checkpoints_on_disk(run_dir: Path) -> dict[str, dict]:
    """Every ``*.pt`` file of the run, loaded: a torn or half-renamed file fails here."""
    return {p.name: load_checkpoint(p) for p in sorted((run_dir / "checkpoints").glob("*.pt"))}


def assert_identical(a: object, b: object, where: str = "") -> None:
    """Recursive equality with tensors compared bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):  # NumPy's RNG state
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:  # NaN (e.g. an unused metric)
        assert isinstance(b, float) and b != b, where
    else:
        assert a == b, where


def assert_same_run(reference: Path, resumed: Path) -> None:
    for name in ("last.pt", "best.pt"):
        ref, got = (load_checkpoint(run / "checkpoints" / name) for run in (reference, resumed))
        for key in ("model", "optimizer", "scheduler", "state", "rng"):
            if key in ref:
                assert_identical(ref[key], got[key], f"{name}:{key}")
    rows = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (reference, resumed)]
    for key in ("epoch", "train_loss", "train_top1", "val_top1", "lr"):
        assert [r[key] for r in rows[0]] == [r[key] for r in rows[1]], key


def kill_and_resume_chain(config: Path, name: str, faults: list[str]) -> list[dict]:
    """Run, get killed by each fault in turn (resuming after each), then finish; returns what each
    kill left on disk. Checks after every kill that the process died by SIGKILL and all
    checkpoints load."""
    run_dir = config.parent / "runs" / name
    left = []
    for fault in faults:
        proc = run_fgvc(config, name, [fault], resume=(run_dir / "checkpoints" / "last.pt").is_file())
        assert proc.returncode == -signal.SIGKILL, f"{fault}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        assert "fault: kill" in proc.stderr
        left.append(checkpoints_on_disk(run_dir))
    assert main(train_argv(config, name, resume=True)) == 0
    return left


def test_killed_at_chosen_points_and_in_checkpoint_writes_resumes_bit_identical(tmp_path):
    config = write_config(tmp_path, epochs=2)
    assert main(train_argv(config, "reference", resume=False)) == 0

    faults = ["kill_before_step@3",      # between two steps
              "kill_in_save@4:best",     # torn best.pt write at the end of epoch 1
              "kill_in_save@4:last",     # torn last.pt write at the end of epoch 1 (best.pt already new)
              "kill_before_save@6",      # after an update, before its checkpoint
              "kill_in_save@7:last"]     # torn last.pt write inside epoch 2
    left = kill_and_resume_chain(config, "killed", faults)

    # what each kill left: last.pt is the previous complete checkpoint, never the torn one
    assert [files["last.pt"]["state"]["global_step"] for files in left] == [2, 3, 3, 5, 6]
    assert "best.pt" not in left[1]  # killed while writing the first best.pt: none yet, no torn file
    assert left[2]["best.pt"]["state"]["global_step"] == 4
    assert_same_run(tmp_path / "runs" / "reference", tmp_path / "runs" / "killed")
    # torn temporary files of killed writes are cleared by the next write of the same checkpoint
    assert not list((tmp_path / "runs" / "killed" / "checkpoints").glob(".*.tmp"))


def test_nan_loss_stops_with_one_line_naming_the_step_and_keeps_the_last_good(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, epochs=2)
    install(["nan@6"], monkeypatch.setattr)
    capsys.readouterr()
    assert main(["-q", "train", str(config), "name=nan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgvc: error: non-finite loss"), err
    assert "epoch 2, step 2 (global step 6)" in err[0] and "last.pt" in err[0]
    files = checkpoints_on_disk(tmp_path / "runs" / "nan")
    assert files["last.pt"]["state"]["global_step"] == 5  # the step before the NaN
    for name, checkpoint in files.items():
        assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point()), name


@pytest.mark.slow
def test_many_random_kill_points_resume_bit_identical(tmp_path):
    """Random faults (seeded) over a 3-epoch run; prints the counts for the record."""
    config = write_config(tmp_path, epochs=3, train_per_class=12)
    per_epoch = 27 // 4  # 36 train images, 25 % held out, batches of 4
    steps = 3 * per_epoch
    assert main(train_argv(config, "reference", resume=False)) == 0
    rng = random.Random(0)
    kills = resumes = 0
    for trial in range(4):
        points = sorted(rng.sample(range(1, steps + 1), 5))
        # best.pt is surely written at the end of epoch 1 only (later epochs may not improve)
        faults = [rng.choice(["kill_before_step@{}", "kill_before_save@{}", "kill_in_save@{}:last"]
                             + ["kill_in_save@{}:best"] * (k == per_epoch)).format(k) for k in points]
        left = kill_and_resume_chain(config, f"killed{trial}", faults)
        kills += len(left)
        resumes += len(left)
        assert_same_run(tmp_path / "runs" / "reference", tmp_path / "runs" / f"killed{trial}")
        print(f"trial {trial}: faults {faults} -> identical")
    print(f"{kills} kills, {resumes} resumes, 4 of 4 runs bit-identical to the reference")
