"""Independent runs of an experiment side by side, each in its own process on one torch thread.

The demo's networks are small: on a CPU one trains almost as fast on one thread as on two (19.8 s
against 18.9 s for the demo's concat run, test_resnet at 64 px, on a 2-core machine), so two runs side by
side on two cores take about as long as one. One thread per run also makes every figure independent of
the machine and of ``workers``: a float sum split over another number of threads rounds differently, so
the thread count is part of a result, and here it is always 1.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable

import torch

from fgvc.console import log_to_console

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _start_worker(level: int) -> None:
    torch.set_num_threads(1)
    log_to_console(level)  # at the caller's level, in the command line's format, to the inherited stderr


class Jobs:
    """``map`` runs ``fn`` over argument lists in ``workers`` processes (spawned once, reused), or in
    this process when ``workers`` is 1; either way on one torch thread. Use as a context manager."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self.pool = None
        if self.workers > 1:
            self.pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(logging.getLogger().getEffectiveLevel(),))

    def map(self, fn: Callable, *iterables: Iterable) -> list:
        """``[fn(*args) for args in zip(*iterables)]``, in order; the first failure is raised here."""
        if self.pool is not None:
            return list(self.pool.map(fn, *iterables))
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [fn(*args) for args in zip(*iterables)]
        finally:
            torch.set_num_threads(previous)

    def __enter__(self) -> Jobs:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
