"""`fgvc demo`: every run is a shipped config with overrides, and the whole path (both sets of every
section, the report) works in seconds with --quick."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from fgvc.cli import main
from fgvc.cli.experiments import DEMO_SECTIONS
from fgvc.config import load_config
from fgvc.experiments import demo
from fgvc.experiments.demo import (CTC_MODELS, DYNAMIC_MLP_MODELS, ERUDITE_CONFIG, RMG_PMSI_MODELS, SECTIONS,
                                   Plan)

REPO_CONFIGS = Path(__file__).parents[1] / "configs"


def test_quick_demo_writes_both_sets_of_every_section(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--data", str(tmp_path / "synthetic"), "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    for words in ("plain vs regional appearance", "plain vs local evidence", "plain vs shared cues",
                  "plain vs transfer target"):
        assert words in printed and words in report
    for label in ("image-only", "concat (ConcatNet)", "Dynamic MLP-C", "RMG-PMSI", "| Single |", "| Ours |",
                  "CTC, transferability setting"):
        assert label in report
    assert "PMG (jigsaw, progressive)" not in report  # a row of --full only
    assert "one seed: no spread to judge it by" in report
    for name in ("regional-appearance", "local-evidence", "shared-cues", "transfer-target"):
        options = json.loads((tmp_path / f"synthetic-{name}" / "synth.json").read_text())["options"]
        assert options[name.replace("-", "_")] in (True, "flowers")
    # each run: the shipped config, its benchmark's folder, the start
    run = out / "dmlp_dynamic_mlp_c_mechanism_pretrained_seed0"
    cfg = load_config(run / "config.yaml")
    assert cfg.seed == 0 and cfg.model.pretrained == "synthetic" and cfg.model.fusion.name == "dynamic_mlp"
    assert cfg.data.root == str(tmp_path / "synthetic-regional-appearance" / "inat")
    assert json.loads((run / "report.json").read_text())["test"]["num_samples"] == 256
    rmg = json.loads((out / "rmg_pmsi_plain_pretrained_seed0" / "report.json").read_text())
    assert set(rmg["test"]["rules"]) == {"concat", "mix"}
    assert (out / "rmg_pmsi_plain_pretrained_seed0" / "report_robustness.md").is_file()
    ours = out / "erudite_mechanism_pretrained_seed0_ours_cub+cars+aircraft+flowers"
    ours = json.loads((ours / "report.json").read_text())
    assert set(ours["test"]["per_dataset"]) == {"cub", "cars", "aircraft", "flowers"}
    ctc = load_config(out / "ctc_transfer_mechanism_random_seed0" / "config.yaml")
    assert ctc.model.pretrained is None  # CTC trains from scratch, as its paper
    rows = json.loads((out / "ctc_analysis_mechanism" / "transfer.json").read_text())["rows"]
    assert sorted({r["epoch"] for r in rows}) == [0, 1]
    assert (out / "comparison" / "comparison.csv").is_file()
    assert (out / "analysis" / "embedding.png").is_file()
    command = "OMP_NUM_THREADS=1 fgvc train configs/dynamic_mlp/synthetic/concat.yaml name=dmlp_concat_plain_pretrained_seed0"
    assert command in report


def test_the_sentence_judges_a_gap_by_the_seeds_spread():
    said = demo.gap_sentence([80.0, 82.0, 84.0], [70.0, 71.0, 72.0], "A", "B", "Here")
    assert said == "Here, A is 11.0 points above B (3 seeds; more than twice the larger seed spread, ±2.0)"
    said = demo.gap_sentence([70.0, 74.0], [71.0, 72.0], "A", "B", "There")
    assert said == "There, A is 0.5 points above B (2 seeds; within twice the larger seed spread, ±2.8)"
    assert demo.gap_sentence([50.0], [60.0], "A", "B", "Once").endswith("10.0 points below B (one seed: no "
                                                                         "spread to judge it by)")
    assert demo._mean_std([1.0, 2.0, 3.0]) == "2.00 ± 1.00" and demo._mean_std([1.5]) == "1.50"
    assert demo._mean_std([1.5], sign="+") == "+1.50"
    assert demo._mean_std([-1.0, -3.0], sign="+") == "-2.00 ± 1.41"


def _as_loaded(cfg) -> dict:
    """A config's settings with ~ expanded in the data roots, and without its output folder."""
    tree = cfg.model_dump(mode="json")
    tree.pop("output_dir")
    for source in [tree["data"]] + tree["data"]["joint"]:
        source["root"] = str(Path(source["root"]).expanduser()) if source["root"] else source["root"]
    return tree


@pytest.mark.parametrize("model", DYNAMIC_MLP_MODELS + RMG_PMSI_MODELS + CTC_MODELS, ids=lambda m: m[1])
@pytest.mark.parametrize("section", [None, "mechanism"])
@pytest.mark.parametrize("start", ["pretrained", "random"])
def test_each_demo_run_is_its_shipped_config_and_the_printed_command_reproduces_it(tmp_path, model, section,
                                                                                    start):
    """No Python copy of a config: the demo loads the repository's file, and `fgvc train` with the line the
    report prints builds exactly the run the demo trained (data in the default cache folder)."""
    _, stem, relative, _ = model
    which = {"dmlp": "dynamic_mlp", "rmg": "rmg_pmsi", "ctc": "ctc"}[stem.split("_")[0]]
    data_dir = demo.set_dir(Path("~/.cache/fgvc/synthetic").expanduser(), which if section else None)
    cfg = demo.demo_config(relative, data_dir, tmp_path, f"{stem}_x_{start}_seed2", 2, Plan(), start)
    words = shlex.split(demo.command(relative, cfg, start))
    assert words[:4] == ["OMP_NUM_THREADS=1", "fgvc", "train", f"configs/{relative}"]  # one thread, as in the demo
    assert _as_loaded(load_config(REPO_CONFIGS / relative, words[4:])) == _as_loaded(cfg)


@pytest.mark.parametrize("section", [None, "erudite"])
def test_the_printed_protocol_command_trains_the_demos_erudite_runs(tmp_path, section):
    data_dir = demo.set_dir(Path("~/.cache/fgvc/synthetic").expanduser(), section)
    which = "mechanism" if section else "plain"
    words = shlex.split(demo.protocol_command(which, data_dir, tmp_path, Plan(), "pretrained", ["ours"]))
    assert words[:9] == ["OMP_NUM_THREADS=1", "fgvc", "protocol", "erudite", f"configs/{ERUDITE_CONFIG}",
                         "--sizes", "4", "--variants", "ours"]
    from_cli = load_config(REPO_CONFIGS / ERUDITE_CONFIG, words[9:])
    name = f"erudite_{which}_pretrained_seed0"  # the protocol prefixes its runs with it, as the demo does
    in_demo = demo.demo_config(ERUDITE_CONFIG, data_dir, tmp_path, name, 0, Plan())
    assert _as_loaded(from_cli) == _as_loaded(in_demo)


def test_the_demo_reads_the_configs_the_package_ships():
    assert demo.shipped_config(ERUDITE_CONFIG).read_bytes() == (REPO_CONFIGS / ERUDITE_CONFIG).read_bytes()
    assert (REPO_CONFIGS / ERUDITE_CONFIG).resolve() == demo.shipped_config(ERUDITE_CONFIG).resolve()
    assert not any(hasattr(demo, name) for name in ("rmg_pmsi_config", "erudite_config", "ctc_config"))


def test_cli_lists_every_demo_section():
    assert DEMO_SECTIONS == SECTIONS
