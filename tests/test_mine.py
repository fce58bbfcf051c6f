"""MINE against the analytic mutual information of Gaussians, and `fgvc analyze information` on a real run."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from conftest import tiny_config, write_folder_dataset
from fgvc.analysis.information import InformationSettings, analyse_information
from fgvc.analysis.runs import epoch_checkpoints
from fgvc.analysis.mine import mine_estimate
from fgvc.cli import main
from fgvc.engine.run import train_and_report
from fgvc.errors import FgvcError


def correlated_gaussians(n: int, dim: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``b = ρ a + √(1−ρ²) z`` per dimension: I(A;B) = −dim/2 · log(1 − ρ²)."""
    g = torch.Generator().manual_seed(seed)
    a, z = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    return a, rho * a + math.sqrt(1 - rho ** 2) * z


def test_estimate_is_close_to_the_analytic_information_and_zero_for_independent_variables():
    truth = -2 / 2 * math.log(1 - 0.9 ** 2)  # 1.66 nats
    a, b = correlated_gaussians(2000, 2, 0.9, seed=0)
    estimate = mine_estimate(a, b, steps=300, hidden=64, batch_size=256, seed=0)
    a0, b0 = correlated_gaussians(2000, 2, 0.0, seed=1)
    independent = mine_estimate(a0, b0, steps=300, hidden=64, batch_size=256, seed=0)
    assert estimate == pytest.approx(truth, abs=0.3)
    assert estimate < truth + 0.1  # a held-out lower bound: no memorised pairs inflate it
    assert abs(independent) < 0.1
    assert estimate > 10 * abs(independent)


def test_same_seed_same_estimate_and_global_rng_untouched():
    a, b = correlated_gaussians(256, 2, 0.8, seed=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = mine_estimate(a, b, steps=40, hidden=16, batch_size=64, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert mine_estimate(a, b, steps=40, hidden=16, batch_size=64, seed=7) == first
    assert mine_estimate(a, b, steps=40, hidden=16, batch_size=64, seed=8) != first


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match="paired rows"):
        mine_estimate(torch.zeros(10, 2), torch.zeros(9, 2))


@pytest.fixture(scope="module")
def run_with_epoch_checkpoints(tmp_path_factory):
    """A tiny 2-epoch run trained with ``train.keep_epoch_checkpoints``: epoch_000.pt (init) to epoch_002.pt."""
    root = tmp_path_factory.mktemp("info")
    data = write_folder_dataset(root / "data", classes=3, train_per_class=8, test_per_class=8, size=24)
    cfg = tiny_config(data, root / "runs", data={"image_size": 16}, train={"keep_epoch_checkpoints": True})
    train_and_report(cfg)
    return cfg.run_dir


def test_cli_writes_one_row_per_epoch_checkpoint(run_with_epoch_checkpoints, tmp_path):
    run = run_with_epoch_checkpoints
    assert [e for e, _ in epoch_checkpoints(run)] == [0, 1, 2]
    out = tmp_path / "info"
    assert main(["-q", "analyze", "information", str(run), "--steps", "20", "--hidden", "16",
                 "--x-size", "4", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "information.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert all(math.isfinite(float(r["i_xt"])) and math.isfinite(float(r["i_ty"])) for r in rows)
    assert all(int(r["samples"]) == 24 for r in rows)  # the test split: 3 classes x 8 images
    result = json.loads((out / "information.json").read_text())
    assert result["settings"]["steps"] == 20 and len(result["rows"]) == 3
    assert (out / "information.png").stat().st_size > 0


def test_last_epoch_only_gives_the_last_row_of_the_whole_curve(run_with_epoch_checkpoints, tmp_path):
    settings = dict(steps=20, hidden=16, x_size=4)
    every = analyse_information([run_with_epoch_checkpoints], tmp_path / "all", InformationSettings(**settings),
                                progress=False)["rows"]
    last = analyse_information([run_with_epoch_checkpoints], tmp_path / "last",
                               InformationSettings(**settings, last_epoch_only=True), progress=False)["rows"]
    assert [r["epoch"] for r in every] == [0, 1, 2] and [r["epoch"] for r in last] == [2]
    assert (last[0]["i_xt"], last[0]["i_ty"]) == (every[-1]["i_xt"], every[-1]["i_ty"])


def test_a_run_without_epoch_checkpoints_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FgvcError, match="keep_epoch_checkpoints"):
        epoch_checkpoints(tmp_path / "run")
    assert main(["analyze", "information", str(tmp_path / "run")]) == 2
    assert "keep_epoch_checkpoints" in capsys.readouterr().err
