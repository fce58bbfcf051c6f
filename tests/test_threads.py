"""The thread policy of the `fgvc` command: waiting OpenMP threads spin briefly then sleep, unless the
user chose a wait policy or a spin count."""

from __future__ import annotations

import os

import pytest

import fgvc.cli
from fgvc.cli.threads import SPIN_COUNT, thread_policy


@pytest.fixture
def no_choice(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)


def test_waiting_threads_spin_briefly_by_default(no_choice):
    thread_policy()
    assert os.environ["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in os.environ


@pytest.mark.parametrize("key,value", [("OMP_WAIT_POLICY", "ACTIVE"), ("OMP_WAIT_POLICY", "PASSIVE"),
                                       ("GOMP_SPINCOUNT", "INFINITE")])
def test_the_users_choice_wins(no_choice, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    thread_policy()
    assert os.environ[key] == value
    assert "GOMP_SPINCOUNT" not in os.environ or key == "GOMP_SPINCOUNT"  # nothing added beside it


def test_the_command_applies_it_before_parsing(monkeypatch):
    calls = []
    monkeypatch.setattr(fgvc.cli, "thread_policy", lambda: calls.append("policy"))
    with pytest.raises(SystemExit):
        fgvc.cli.main(["--version"])
    assert calls == ["policy"]
