"""The thread policy of the `fgvc` command: waiting OpenMP threads sleep, unless the user chose."""

from __future__ import annotations

import os

import pytest

import fgvc.cli
from fgvc.cli.threads import thread_policy


def test_waiting_threads_sleep_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    thread_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    thread_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_command_applies_it_before_parsing(monkeypatch):
    calls = []
    monkeypatch.setattr(fgvc.cli, "thread_policy", lambda: calls.append("policy"))
    with pytest.raises(SystemExit):
        fgvc.cli.main(["--version"])
    assert calls == ["policy"]
