"""Runs side by side (fgvc.experiments.jobs): a worker's result is the result of the same run in this
process, in the caller's order, each worker on one torch thread, and a worker's error reaches the caller."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from conftest import tiny_config

from fgvc.checkpoint import load_checkpoint
from fgvc.errors import FgvcError
from fgvc.experiments.demo import train_run
from fgvc.experiments.jobs import Jobs


@pytest.fixture(scope="module")
def pool():
    with Jobs(2) as jobs:
        yield jobs


def where_and_how(tag: int) -> tuple[int, int, int]:
    return tag, os.getpid(), torch.get_num_threads()


def say(tag: int) -> None:
    logging.getLogger("fgvc.test").warning("run %d finished", tag)


def refuse(tag: int) -> None:
    raise FgvcError(f"record {tag}: bad latitude")


def test_workers_are_other_processes_on_one_thread_and_answer_in_order(pool):
    answers = pool.map(where_and_how, range(6))
    assert [tag for tag, _, _ in answers] == list(range(6))
    assert os.getpid() not in {pid for _, pid, _ in answers}
    assert {threads for _, _, threads in answers} == {1}


def test_in_this_process_the_jobs_run_on_one_thread_and_the_thread_count_comes_back():
    before = torch.get_num_threads()
    with Jobs(1) as jobs:
        answers = jobs.map(where_and_how, [7])
    assert answers == [(7, os.getpid(), 1)]
    assert torch.get_num_threads() == before


def test_a_workers_error_reaches_the_caller(pool):
    with pytest.raises(FgvcError, match="record 3: bad latitude"):
        pool.map(refuse, [3])


def test_a_run_in_a_worker_equals_the_same_run_in_this_process(pool, folder_dataset, tmp_path):
    seeds = [0, 1]
    inline = [tiny_config(folder_dataset, tmp_path / "inline", name=f"s{s}", seed=s) for s in seeds]
    side = [tiny_config(folder_dataset, tmp_path / "side", name=f"s{s}", seed=s) for s in seeds]
    with Jobs(1) as jobs:
        here = jobs.map(train_run, inline, ["inline"] * 2)
    there = pool.map(train_run, side, ["side by side"] * 2)
    assert [r["name"] for r in there] == ["s0", "s1"]
    assert [r["top1"] for r in here] == [r["top1"] for r in there]
    for a, b in zip(inline, side):
        wa = load_checkpoint(a.run_dir / "checkpoints" / "last.pt")["model"]
        wb = load_checkpoint(b.run_dir / "checkpoints" / "last.pt")["model"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # two seeds are two different runs: the comparison above could fail
    w0 = load_checkpoint(side[0].run_dir / "checkpoints" / "last.pt")["model"]
    w1 = load_checkpoint(side[1].run_dir / "checkpoints" / "last.pt")["model"]
    assert not all(torch.equal(w0[k], w1[k]) for k in w0 if w0[k].is_floating_point())


def test_a_worker_logs_at_the_callers_level_in_the_command_lines_format(capfd):
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.ERROR)
    try:
        with Jobs(2) as jobs:
            jobs.map(say, [5])
        root.setLevel(logging.WARNING)
        with Jobs(2) as jobs:
            jobs.map(say, [6])
    finally:
        root.setLevel(saved)
    err = capfd.readouterr().err
    assert "run 5" not in err  # below the caller's level then
    assert "W run 6 finished" in err
