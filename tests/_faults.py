"""Fault injection without production hooks: run ``fgvc`` with faults patched in from outside.

``python tests/_faults.py FAULT [FAULT ...] -- <fgvc arguments>`` installs the faults, then runs
``fgvc.cli.main``. A fault is ``kind@step`` where ``step`` is the global optimiser step (1-based):

- ``kill_before_step@k``: SIGKILL the process when step k is about to run (step k-1 is done).
- ``kill_before_save@k``: SIGKILL after step k's update, just before its checkpoint is written.
- ``kill_in_save@k:last`` / ``kill_in_save@k:best``: while ``torch.save`` writes the checkpoint
  whose state is at global step k (last.pt or best.pt), write half of its bytes to the temporary
  file, fsync, then SIGKILL: a torn write, the case ``save_atomic`` exists for.
- ``nan@k``: the loss of step k becomes NaN (the run must stop naming the step).

Tests that stay in-process call ``install(faults, setattr)`` with ``monkeypatch.setattr``.
"""

from __future__ import annotations

import io
import os
import signal
import sys

import torch

from fgvc.engine.trainer import Trainer

KINDS = ("kill_before_step", "kill_before_save", "kill_in_save", "nan")


def parse(fault: str) -> tuple[str, int, str | None]:
    """``"kill_in_save@4:best"`` -> ("kill_in_save", 4, "best")."""
    kind, _, rest = fault.partition("@")
    step, _, target = rest.partition(":")
    if kind not in KINDS or not step.isdigit() or target not in ("", "last", "best"):
        raise ValueError(f"bad fault {fault!r}: expected <kind>@<step>[:last|:best], kinds {KINDS}")
    return kind, int(step), target or None


def die(why: str) -> None:
    """SIGKILL ourselves: no cleanup, no finally blocks, no atexit, like a power cut or the OOM killer."""
    print(f"fault: {why}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def install(faults: list[str], setattr_=setattr) -> None:
    parsed = [parse(f) for f in faults]

    def wanted(kind: str, step: int, target: str | None = None) -> bool:
        return any(k == kind and s == step and t in (None, target) for k, s, t in parsed)

    real_train_step, real_update, real_save_last = Trainer.train_step, Trainer.update, Trainer.save_last
    real_torch_save = torch.save

    def train_step(self, batch):
        if wanted("kill_before_step", self.state.global_step + 1):
            die(f"kill before step {self.state.global_step + 1}")
        return real_train_step(self, batch)

    def update(self, loss, *args, **kwargs):
        if wanted("nan", self.state.global_step + 1):
            loss = loss * float("nan")
        return real_update(self, loss, *args, **kwargs)

    def save_last(self):
        if wanted("kill_before_save", self.state.global_step):
            die(f"kill before saving step {self.state.global_step}")
        return real_save_last(self)

    def torch_save(obj, f, *args, **kwargs):
        state = obj.get("state") if isinstance(obj, dict) else None
        if isinstance(state, dict):
            target = "last" if "optimizer" in obj else "best"
            if wanted("kill_in_save", state["global_step"], target):
                buffer = io.BytesIO()
                real_torch_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                die(f"kill while writing {target}.pt of step {state['global_step']} "
                    f"({len(data) // 2} of {len(data)} bytes written)")
        return real_torch_save(obj, f, *args, **kwargs)

    setattr_(Trainer, "train_step", train_step)
    setattr_(Trainer, "update", update)
    setattr_(Trainer, "save_last", save_last)
    setattr_(torch, "save", torch_save)


if __name__ == "__main__":
    split = sys.argv.index("--")
    install(sys.argv[1:split])
    from fgvc.cli import main

    raise SystemExit(main(sys.argv[split + 1:]))
