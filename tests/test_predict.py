"""`fgvc predict` on checkpoints written by real (tiny) runs."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config

from fgvc.cli import main
from fgvc.engine.trainer import Trainer


@pytest.fixture(scope="module")
def image_only_checkpoint(folder_dataset, tmp_path_factory):
    cfg = tiny_config(folder_dataset, tmp_path_factory.mktemp("runs"), schedule={"epochs": 2})
    Trainer(cfg).fit()
    return cfg.run_dir / "checkpoints" / "best.pt"


def test_predict_prints_top_k_with_names(image_only_checkpoint, folder_dataset, capsys):
    image = folder_dataset / "test" / "class_1" / "000.png"
    assert main(["-q", "predict", "--checkpoint", str(image_only_checkpoint), str(image), "--topk", "2",
                 "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["metadata"] == "not used by this model"
    assert [t["class"] for t in result["top"]] != [] and len(result["top"]) == 2
    assert all(t["class"].startswith("class_") for t in result["top"])
    probs = [t["probability"] for t in result["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert main(["-q", "predict", "--checkpoint", str(image_only_checkpoint), str(image)]) == 0
    assert "1. class_" in capsys.readouterr().out


def test_predict_errors_are_one_line(image_only_checkpoint, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(tmp_path / "none.pt"), "x.jpg"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"no image")
    assert main(["predict", "--checkpoint", str(image_only_checkpoint), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.jpg" in err[0]
