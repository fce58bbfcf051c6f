"""fgvc compare: seeds of one method grouped by run name, mean ± std by hand, datasets as columns."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from conftest import tiny_config
from fgvc.analysis.compare import method_name, write_comparison
from fgvc.cli import main
from fgvc.engine.run import train_and_report


@pytest.fixture(scope="module")
def runs(folder_dataset, tmp_path_factory):
    """Two seeds of method ``m``, one of ``other`` (label smoothing), and ``m`` on a second-named dataset."""
    root = tmp_path_factory.mktemp("compare")
    plans = {"m_s0": ({"seed": 0}, {}), "m_s1": ({"seed": 1}, {}),
             "other_seed0": ({"seed": 0}, {"train": {"label_smoothing": 0.1}}),
             "m_seed3": ({"seed": 3}, {"data": {"name": "colours2"}})}
    out = {}
    for name, (top, sections) in plans.items():
        cfg = tiny_config(folder_dataset, root / "runs", schedule={"epochs": 1, "warmup_epochs": 0}, **sections)
        cfg = cfg.model_copy(update={"name": name, **top})
        train_and_report(cfg)
        out[name] = cfg.run_dir
    return out


def report(run_dir) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.mark.parametrize("name, method", [("dmlp_s0", "dmlp"), ("dmlp_seed12", "dmlp"), ("a-seed-2", "a"),
                                          ("aseed3", "a"), ("mobilenets3", "mobilenets3"), ("seed0", "seed0")])
def test_method_name_drops_a_seed_suffix(name, method):
    assert method_name(name) == method
    assert method_name(name, "run") == name


def test_table_has_hand_computed_mean_and_std(runs, tmp_path, capsys):
    assert main(["-q", "compare", *map(str, runs.values()), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    top1 = [report(runs[n])["test"]["top1"] for n in ("m_s0", "m_s1")]
    top5 = [report(runs[n])["test"]["top5"] for n in ("m_s0", "m_s1")]
    mean = (top1[0] + top1[1]) / 2
    std = abs(top1[0] - top1[1]) / 2 ** 0.5  # sample std of two values
    dataset = report(runs["m_s0"])["dataset"]
    md = (tmp_path / "comparison.md").read_text()
    assert md.count("\n| m |") == 1 and md.count("\n| other |") == 1  # two seeds -> one row
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header.split(" | ")[1:5] == [f"{dataset} top-1", f"{dataset} top-5", "colours2 top-1", "colours2 top-5"]
    m_row = next(line for line in md.splitlines() if line.startswith("| m |")).split(" | ")
    assert m_row[1] == f"{mean:.2f} ± {std:.2f}"
    assert m_row[2] == f"{statistics.fmean(top5):.2f} ± {statistics.stdev(top5):.2f}"
    assert m_row[3] == f"{report(runs['m_seed3'])['test']['top1']:.2f}"  # one seed: no ±
    assert f"{mean:.2f} ± {std:.2f}" in printed
    rows = list(csv.DictReader(open(tmp_path / "comparison.csv")))
    assert [(r["method"], r["dataset"], r["seeds"]) for r in rows] == [
        ("m", dataset, "0 1"), ("m", "colours2", "3"), ("other", dataset, "0")]
    assert float(rows[0]["top1_mean"]) == pytest.approx(mean) and float(rows[0]["top1_std"]) == pytest.approx(std)
    assert rows[2]["top1_std"] == ""
    params = report(runs["m_s0"])["params_m"]
    assert float(rows[0]["params_m"]) == pytest.approx(params) and float(rows[0]["gmacs"]) > 0


def test_group_by_run_and_errors(runs, tmp_path, capsys):
    _, csv_path, _ = write_comparison([runs["m_s0"], runs["m_s1"]], tmp_path, "run", with_complexity=False)
    assert [r["method"] for r in csv.DictReader(open(csv_path))] == ["m_s0", "m_s1"]
    (tmp_path / "unfinished").mkdir()
    assert main(["compare", str(runs["m_s0"]), str(tmp_path / "unfinished"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unfinished: not a finished run (no config.yaml and report.json)" in err[0]
    clone = tmp_path / "again" / "m_s0"
    clone.mkdir(parents=True)
    for f in ("config.yaml", "report.json"):
        (clone / f).write_text((runs["m_s0"] / f).read_text())
    assert main(["compare", str(runs["m_s0"]), str(clone), "--out", str(tmp_path)]) == 2
    assert "same method, dataset and seed 0" in capsys.readouterr().err
