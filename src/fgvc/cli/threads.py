"""How torch's threads behave on a machine shared with other work (run before torch is imported).

torch parallelises each operation over OpenMP threads, one per physical core, which meet at a barrier
after every parallel region. GNU OpenMP's default has a thread that reaches the barrier first *spin*
for a while before it sleeps. On a quiet machine that saves a wake-up; on a busy one, the sibling it
waits for has often lost its core to another process, and the spinning thread burns the very time
slice the sibling needs: one competing process then slows training several-fold instead of by the
share of cores it takes. With ``OMP_WAIT_POLICY=PASSIVE`` a waiting thread sleeps at once and gives
its core back. The thread count stays torch's (the physical cores). A value the user already set in
the environment wins; ``benchmarks/busy_machine.py`` measures both policies.
"""

from __future__ import annotations

import os


def thread_policy() -> None:
    """Let waiting OpenMP threads sleep instead of spinning, unless the environment says otherwise.

    Only effective before the OpenMP runtime starts (before ``import torch``); the ``fgvc`` command
    calls it first thing, and its DataLoader workers and ``torchrun`` children inherit it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
