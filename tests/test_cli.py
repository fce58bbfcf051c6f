"""The command line: help, `data verify`, `data synth`, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import write_folder_dataset

from fgvc.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "data", "demo"):
        assert command in out


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "fgvc", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("fgvc ")


def test_verify_reports_counts_and_every_bad_file(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", classes=2, train_per_class=6, test_per_class=2)
    (root / "train" / "class_1" / "002.png").write_bytes(b"not an image")
    (root / "test" / "class_0" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"format": "folder", "root": str(root), "val_fraction": 0.2}}))
    code = main(["-q", "data", "verify", str(cfg), "--json", str(tmp_path / "v.json")])
    out = capsys.readouterr().out
    assert code == 1  # problems found
    assert "002.png" in out and "001.png" in out and "2 problem(s)" in out
    summary = json.loads((tmp_path / "v.json").read_text())
    splits = summary["splits"]
    assert splits["test"]["images"] == 4 and splits["train"]["images"] + splits["val"]["images"] == 12
    assert sum(s["unreadable_images"] for s in splits.values()) == 2


def test_config_error_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"format": "folder", "root": "x"}}))
    assert main(["train", str(cfg), "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fgvc: error: unknown config key 'optim.lrr' (known keys here: name, lr, base_batch_size, "
                   "backbone_lr, momentum, nesterov, weight_decay, betas)"]


def test_missing_dataset_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"format": "cub", "root": str(tmp_path / "nowhere")}}))
    assert main(["data", "verify", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgvc: error:") and "nowhere" in err[0]


def test_synth_then_train_and_evaluate_on_it(tmp_path, capsys):
    """The platform end to end: `data synth` writes iNat-2021 files, the real reader trains on them."""
    out = tmp_path / "synth"
    assert main(["-q", "data", "synth", str(out), "--genera", "2", "--species-per-genus", "2",
                 "--train-per-class", "8", "--train-mini-per-class", "4", "--val-per-class", "3",
                 "--size", "32", "--domains", "cub", "--domain-genera", "1", "--domain-species-per-genus", "2",
                 "--domain-images-per-class", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inat"]["classes"] == 4 and (out / "inat" / "train.json").is_file()
    cfg = tmp_path / "synth.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "synth", "output_dir": str(tmp_path / "runs"),
        "data": {"format": "inat2021", "root": str(out / "inat"), "train_split": "train", "image_size": 32,
                 "batch_size": 4, "num_workers": 0, "val_fraction": 0.25, "metadata": ["geo", "temporal"]},
        "model": {"backbone": "test_resnet"}, "schedule": {"epochs": 2, "warmup_epochs": 0},
        "train": {"progress": False}}))
    assert main(["-q", "train", str(cfg)]) == 0
    report = json.loads((tmp_path / "runs" / "synth" / "report.json").read_text())
    assert report["test"]["num_samples"] == 12 and report["protocol"]["counts"]["test"] == 12
    assert report["protocol"]["missing_metadata"] is not None
    assert "official split 'val'" in (tmp_path / "runs" / "synth" / "report.md").read_text()
    assert main(["-q", "data", "verify", str(cfg)]) == 0  # missing metadata is counted, not a problem
    assert "train" in capsys.readouterr().out
    # PriorsNet on the same data, combined with that image-only model at test time
    best = tmp_path / "runs" / "synth" / "checkpoints" / "best.pt"
    assert main(["-q", "train", str(cfg), "name=priors", "method.name=priors", f"method.image_checkpoint={best}",
                 "method.priors_epochs=2", "method.priors_batch_size=8"]) == 0
    priors = json.loads((tmp_path / "runs" / "priors" / "report.json").read_text())
    assert priors["image_only"]["test"]["top1"] == report["test"]["top1"]  # same image model, same split
    assert priors["test"]["num_samples"] == 12 and (tmp_path / "runs" / "priors" / "checkpoints" / "priors.pt").is_file()


def test_synth_bad_option_is_one_line(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--genera", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "genera" in err[0]
