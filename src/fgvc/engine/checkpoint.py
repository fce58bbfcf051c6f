"""What the trainer's checkpoints add to the model's weights: the random number generators' states.

Writing and reading checkpoint files (atomically) is ``fgvc.checkpoint``, which models and methods
use too; its two functions are importable from here as well.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from fgvc.checkpoint import load_checkpoint, save_atomic  # noqa: F401  (also imported from here)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
