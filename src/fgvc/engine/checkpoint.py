"""What the trainer's checkpoints add to the model's weights: the random number generators' states,
as tensors and plain values (so that checkpoints load with ``weights_only=True``).

Writing and reading checkpoint files (atomically, checksummed, without running code) is
``fgvc.checkpoint``, which models and methods use too; its functions are importable from here as well.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from fgvc.checkpoint import load_checkpoint, save_atomic  # noqa: F401  (also imported from here)


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values (no NumPy arrays)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                    has_gauss, cached),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore ``rng_state()`` (also a state of an older fgvc, whose NumPy keys are a NumPy array)."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
