"""`fgvc demo --quick`: the whole demo path (synthetic data, three models, seeds, report) in seconds."""

from __future__ import annotations

import json

from fgvc.cli import main


def test_quick_demo_writes_the_comparison(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--data", str(tmp_path / "synth"), "--out", str(out), "--quick",
                 "--seeds", "0", "1"]) == 0
    printed = capsys.readouterr().out
    for label in ("image-only", "concat (ConcatNet)", "Dynamic MLP-C"):
        assert label in printed
    report = (out / "report.md").read_text()
    assert "±" in report and (out / "demo_top1.png").stat().st_size > 1000
    for run in ("image_only_seed0", "concat_seed1", "dynamic_mlp_c_seed0"):
        assert json.loads((out / run / "report.json").read_text())["test"]["num_samples"] == 256
    dmlp = (out / "dynamic_mlp_c_seed0" / "config.yaml").read_text()
    assert "dynamic_mlp" in dmlp and "- geo" in dmlp
