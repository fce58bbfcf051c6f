"""A stratified hold-out of the training split for model selection when a dataset has no val split.

CUB, Cars, Aircraft, Flowers and iNat report on their official test/val split, which must never
choose the checkpoint or the hyper-parameters; a seeded slice of train does instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from fgvc.data.index import SampleIndex
from fgvc.data.records import Sample


def stratified_holdout(samples: Sequence[Sample], fraction: float,
                       seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into (train, val) with about ``fraction`` of each class in val.

    Per class of n samples, round(n * fraction) go to val, at most n - 1: a class with one sample
    stays in train and every class keeps at least one training sample. Which samples go is drawn by
    a generator seeded with (seed, label) over the class's samples sorted by (path, id), so the
    result depends only on the seed and the set of samples: not on the order of classes or of the
    input. Both outputs keep the input order.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"hold-out fraction must be in (0, 1), not {fraction}")
    if isinstance(samples, SampleIndex):
        held = _held_out(samples, fraction, seed)
        return samples.take(~held), samples.take(held)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_class[s.label].append(i)
    held_out: set[int] = set()
    for label, indices in by_class.items():
        n_val = min(len(indices) - 1, int(len(indices) * fraction + 0.5))
        if n_val <= 0:
            continue
        ordered = sorted(indices, key=lambda i: (samples[i].path, samples[i].id))
        rng = np.random.default_rng([seed, label])
        held_out.update(ordered[k] for k in rng.permutation(len(ordered))[:n_val])
    train = [s for i, s in enumerate(samples) if i not in held_out]
    val = [s for i, s in enumerate(samples) if i in held_out]
    return train, val


def _held_out(index: SampleIndex, fraction: float, seed: int) -> np.ndarray:
    """``stratified_holdout``'s draw on an index, as a bool mask: the same rule, class by class over
    the positions sorted by (label, path, id), with no Python object per sample."""
    order = index.holdout_order()
    counts = np.bincount(index.labels, minlength=int(index.labels.max()) + 1 if len(index) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)])
    held = np.zeros(len(index), bool)
    for label in np.flatnonzero(counts):
        n = int(counts[label])
        n_val = min(n - 1, int(n * fraction + 0.5))
        if n_val > 0:
            ordered = order[starts[label]:starts[label + 1]]
            held[ordered[np.random.default_rng([seed, int(label)]).permutation(n)[:n_val]]] = True
    return held
