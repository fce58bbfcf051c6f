"""Deterministic randomness: every generated thing draws from its own named key.

Keys are tuples of integers and readable strings, so the same options give the same bytes and a
change of one count (more genera, more images per class) leaves every other thing unchanged.
"""

from __future__ import annotations

import numpy as np

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def key_seed(*key: int | str) -> np.random.SeedSequence:
    """The seed of one named thing; strings are turned into integers stably so keys can be readable."""
    words = [k if isinstance(k, int) else int.from_bytes(k.encode(), "little") for k in key]
    return np.random.SeedSequence(words)


def key_rng(*key: int | str) -> np.random.Generator:
    return np.random.default_rng(key_seed(*key))


def image_rng(seed: int, domain: str, cls: int, split: str, index: int) -> np.random.Generator:
    return key_rng(seed, domain, cls, SPLIT_IDS[split], index)
