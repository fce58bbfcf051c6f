"""`fgvc demo --quick`: the whole demo path (synthetic data, three models, seeds, report) in seconds."""

from __future__ import annotations

import json
from pathlib import Path

from fgvc.cli import main
from fgvc.cli.experiments import DEMO_SECTIONS
from fgvc.config import load_config
from fgvc.experiments.demo import CTC_EPOCHS, CTC_MODELS, RMG_PMSI_MODELS, SECTIONS, ctc_config, erudite_config, rmg_pmsi_config


def test_quick_demo_writes_the_comparison(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--data", str(tmp_path / "synth"), "--out", str(out), "--quick",
                 "--seeds", "0", "1"]) == 0
    printed = capsys.readouterr().out
    for label in ("image-only", "concat (ConcatNet)", "Dynamic MLP-C"):
        assert label in printed
    report = (out / "report.md").read_text()
    assert "±" in report and (out / "demo_top1.png").stat().st_size > 1000
    assert "| dynamic_mlp_c |" in report and (out / "comparison" / "comparison.csv").is_file()
    assert "![t-SNE](analysis/embedding.png)" in report and (out / "analysis" / "embedding.png").is_file()
    for run in ("image_only_seed0", "concat_seed1", "dynamic_mlp_c_seed0"):
        assert json.loads((out / run / "report.json").read_text())["test"]["num_samples"] == 256
    dmlp = (out / "dynamic_mlp_c_seed0" / "config.yaml").read_text()
    assert "dynamic_mlp" in dmlp and "- geo" in dmlp
    assert "RMG-PMSI" in printed and "PMG (jigsaw, progressive)" in printed
    assert "## RMG-PMSI" in report and "## Dynamic MLP" in report
    rmg = json.loads((out / "rmg_pmsi" / "report.json").read_text())
    assert set(rmg["test"]["rules"]) == {"concat", "mix"}
    assert (out / "rmg_pmsi" / "report_robustness.md").is_file()
    assert "## The erudite model" in report and "| Single |" in report and "| Ours |" in report
    ours = json.loads((out / "erudite_ours_cub+cars+aircraft+flowers" / "report.json").read_text())
    assert set(ours["test"]["per_dataset"]) == {"cub", "cars", "aircraft", "flowers"}
    assert "## CTC" in report and "| CTC, transferability setting |" in report
    rows = json.loads((out / "ctc_analysis" / "transfer.json").read_text())["rows"]
    assert sorted((r["run"], r["epoch"]) for r in rows) == [(run, e) for run in ("ctc_transfer", "ctc_vanilla")
                                                           for e in range(3)]
    assert (out / "ctc_analysis" / "information.png").stat().st_size > 5000
    assert json.loads((out / "ctc_transfer" / "report.json").read_text())["test"]["per_dataset"].keys() == {
        "cub", "cars", "aircraft"}


def test_demo_configs_match_the_synthetic_yaml_files(tmp_path):
    """The demo builds its RMG-PMSI runs in code; configs/rmg_pmsi/synthetic must describe the same runs."""
    root = Path(__file__).parents[1] / "configs" / "rmg_pmsi" / "synthetic"
    files = {"rmg_baseline": "baseline.yaml", "rmg_pmg": "pmg.yaml", "rmg_pmsi": "rmg_pmsi.yaml"}
    for _, name, *fields in RMG_PMSI_MODELS:
        demo = rmg_pmsi_config(tmp_path, tmp_path, name, *fields, seed=0, epochs=10, quick=False)
        yaml_cfg = load_config(root / files[name], [f"data.root={tmp_path / 'inat'}", f"output_dir={tmp_path}",
                                                    f"name={name}"])
        for section in ("data", "model", "optim", "schedule"):
            assert getattr(demo, section) == getattr(yaml_cfg, section), (name, section)
        assert demo.method.name == yaml_cfg.method.name
        if demo.method.name == "progressive":
            assert demo.method == yaml_cfg.method


def test_erudite_demo_config_matches_the_synthetic_yaml(tmp_path):
    root = Path(__file__).parents[1] / "configs" / "erudite" / "synthetic"
    demo = erudite_config(tmp_path, tmp_path, seed=0, epochs=10, quick=False)
    joint = [f"data.joint={[{'format': s.format, 'root': s.root} for s in demo.data.joint]}"]
    yaml_cfg = load_config(root / "_synthetic.yaml", joint + [f"output_dir={tmp_path}", "name=erudite"])
    for section in ("data", "model", "method", "optim", "schedule"):
        assert getattr(demo, section) == getattr(yaml_cfg, section), section


def test_ctc_demo_configs_match_the_synthetic_yaml(tmp_path):
    root = Path(__file__).parents[1] / "configs" / "ctc" / "synthetic"
    files = {"ctc_vanilla": "vanilla.yaml", "ctc_transfer": "ctc_transfer.yaml"}
    for _, name, method in CTC_MODELS:
        demo = ctc_config(tmp_path, tmp_path, name, method, seed=0, epochs=CTC_EPOCHS, quick=False)
        joint = [f"data.joint={[{'format': s.format, 'root': s.root} for s in demo.data.joint]}"]
        yaml_cfg = load_config(root / files[name], joint + [f"output_dir={tmp_path}", f"name={name}"])
        for section in ("data", "model", "method", "optim", "schedule", "train"):
            assert getattr(demo, section) == getattr(yaml_cfg, section), (name, section)


def test_cli_lists_every_demo_section():
    assert DEMO_SECTIONS == SECTIONS
