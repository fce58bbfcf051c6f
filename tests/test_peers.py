"""The peer runner's own parts (benchmarks/peers/): the releases themselves are not in the repository,
so what is checked here is what the runner does around them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))

import common  # noqa: E402
import pmg  # noqa: E402
import rmg_pmsi  # noqa: E402
import run  # noqa: E402

from fgvc.config import load_config  # noqa: E402


@pytest.mark.parametrize("peer", [pmg, rmg_pmsi], ids=["pmg", "rmg_pmsi"])
def test_the_fgvc_configs_carry_the_releases_recipe(peer, tmp_path):
    cfg = load_config(PEERS / f"{peer.NAME}.yaml", [f"data.root={tmp_path}"])
    run.check_recipe(cfg, peer.RECIPE)
    assert any(str(tmp_path / "init.pt") in e.new for e in peer.edits(cfg, 32, 0, tmp_path / "init.pt"))
    assert not any("init.pt" in e.new for e in peer.edits(cfg, 32, 0, None))
    with pytest.raises(common.PeerError, match="optim.weight_decay=0.001"):
        run.check_recipe(load_config(PEERS / f"{peer.NAME}.yaml", [f"data.root={tmp_path}", "optim.weight_decay=1e-3"]),
                         peer.RECIPE)


def test_edits_apply_in_the_open_or_say_which_release_they_expect(tmp_path):
    (tmp_path / "train.py").write_text("lr = 0.1\nepochs = 200\nepochs = 200\n")
    diff = common.apply_edits(tmp_path, [common.Edit("train.py", "lr = 0.1", "lr = 0.05", "rate"),
                                         common.Edit("train.py", "epochs = 200", "epochs = 10", "epochs", count=2)],
                              "abc1234")
    assert (tmp_path / "train.py").read_text() == "lr = 0.05\nepochs = 10\nepochs = 10\n"
    assert "# train.py: rate; epochs" in diff and "-lr = 0.1\n" in diff and "+lr = 0.05\n" in diff
    with pytest.raises(common.PeerError, match=r"train.py: expected 1 x 'lr = 0.1', found 0 .*commit abc1234"):
        common.apply_edits(tmp_path, [common.Edit("train.py", "lr = 0.1", "lr = 0.05", "rate")], "abc1234")
    with pytest.raises(common.PeerError, match="model.py: not in the release"):
        common.apply_edits(tmp_path, [common.Edit("model.py", "a", "b", "c")], "abc1234")


def test_results_are_read_as_the_releases_write_them(tmp_path):
    (tmp_path / "bird").mkdir()
    # PMG's train.py: 'Iteration %d, test_acc = %.5f, test_acc_combined = %.5f, test_loss = %.6f\n'
    (tmp_path / "bird" / "results_test.txt").write_text(
        "Iteration 0, test_acc = 12.50000, test_acc_combined = 15.00000, test_loss = 3.000000\n"
        "Iteration 1, test_acc = 20.25000, test_acc_combined = 18.00000, test_loss = 2.500000\n")
    log = "Epoch: 0\npeer-runner: train seconds 4.500\nEpoch: 1\npeer-runner: train seconds 4.250\n"
    assert pmg.results(tmp_path, log) == [{"epoch": 1, "concat": 12.5, "mix": 15.0, "seconds": 4.5},
                                          {"epoch": 2, "concat": 20.25, "mix": 18.0, "seconds": 4.25}]
    # RMG-PMSI's main.py: now + " Valid concat loss is :{:.4f},Valid accuracy is:{:.4f}%\n" (and mix)
    log = ("peer-runner: train seconds 7.000\n"
           "2024-01-01 00:00:00 Valid concat loss is :3.0000,Valid accuracy is:25.0000%\n"
           "2024-01-01 00:00:00 Valid mix loss is :2.9000,Valid accuracy is:31.2500%\n")
    assert rmg_pmsi.results(tmp_path, log) == [{"epoch": 1, "concat": 25.0, "mix": 31.25, "seconds": 7.0}]


def test_rmg_pmsi_keeps_the_releases_rate_ratio(tmp_path):
    cfg = load_config(PEERS / "rmg_pmsi.yaml", [f"data.root={tmp_path}", "optim.lr=0.01"])
    with pytest.raises(common.PeerError, match="10x the backbone's rate"):
        rmg_pmsi.edits(cfg, 32, 0, None)


def test_seeds_run_one_at_a_time_add_up_to_one_table(tmp_path, capsys):
    side = {"best_concat": 20.0, "best_mix": 21.0, "last_concat": 19.0, "last_mix": 20.5, "concat": 22.0,
            "mix": 23.0, "seconds": 100.0}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"method": "pmg", "start": "same", "overrides": [],
                                "rows": [{"seed": s, "fgvc": side, "release": side} for s in (0, 1)]}))
    args = argparse.Namespace(method="pmg", start="same", overrides=[], seeds=[1, 2])
    assert [row["seed"] for row in run.earlier_rows(path, args)] == [0]  # seed 1 is run again
    assert "seed(s) 0" in capsys.readouterr().out
    args.overrides = ["schedule.epochs=1"]
    assert run.earlier_rows(path, args) == []
    assert "other settings, replaced" in capsys.readouterr().out
    assert run.earlier_rows(tmp_path / "none.json", args) == []


def test_the_table_leaves_empty_what_an_older_row_lacks_and_averages_the_rest():
    release = {"best_concat": 20.0, "best_mix": 21.0, "last_concat": 19.0, "last_mix": 20.5, "seconds": 100.0}
    old = {"concat": 22.0, "mix": 23.0, "seconds": 90.0}  # written before fgvc's last epoch was scored
    new = {**old, "concat": 24.0, "last_concat": 25.0, "last_mix": 26.0}
    text = run.table(pmg, [{"seed": 0, "fgvc": old, "release": release}, {"seed": 1, "fgvc": new, "release": release}])
    lines = text.splitlines()
    assert "fgvc last-epoch P_concat" in lines[0] and len(lines) == 5
    assert lines[2] == "| 0 | 20.00 | 21.00 | 19.00 | 20.50 | 22.00 | 23.00 |  |  | 100.00 | 90.00 |"
    assert lines[3] == "| 1 | 20.00 | 21.00 | 19.00 | 20.50 | 24.00 | 23.00 | 25.00 | 26.00 | 100.00 | 90.00 |"
    assert lines[4].split(" | ")[5:9] == ["23.00 ± 1.41", "23.00 ± 0.00", "25.00", "26.00"]
