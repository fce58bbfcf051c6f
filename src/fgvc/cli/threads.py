"""How torch's threads wait on a machine that may be shared with other work (run before torch is imported).

torch parallelises each operation over OpenMP threads, one per physical core, which meet at a barrier
after every parallel region. A thread that reaches the barrier first spins for a while, then sleeps.
GNU OpenMP's default spin (300,000 rounds) saves a wake-up on a quiet machine; on a busy one the
sibling it waits for has often lost its core to another process, and the spinning thread burns the
very time slice the sibling needs: one competing process then slows training several-fold instead of
by the share of cores it takes. Not spinning at all (``OMP_WAIT_POLICY=PASSIVE``) fixes that but pays
a wake-up at every barrier, which slows a quiet machine by a third or more. A short spin of 1,000
rounds (a few microseconds) keeps nearly all of both: measured with ``benchmarks/busy_machine.py``
(README, "A busy machine"). The thread count stays torch's (the physical cores).
"""

from __future__ import annotations

import os

SPIN_COUNT = "1000"  # GNU OpenMP busy-wait rounds before a waiting thread sleeps


def thread_policy() -> None:
    """Let waiting OpenMP threads spin briefly, then sleep, unless the environment already chose
    (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set).

    Only effective before the OpenMP runtime starts (before ``import torch``); the ``fgvc`` command
    calls it first thing, and its DataLoader workers and ``torchrun`` children inherit it.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
