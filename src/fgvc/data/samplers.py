"""Samplers whose position can be saved and restored, so a resumed run sees the same batches.

The training sampler yields ``(index, aug_seed)`` pairs: each sample's augmentation is seeded from
(run seed, epoch, position in the epoch), which makes the augmented pixels independent of worker
count, worker scheduling and where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from fgvc.errors import DataError


class ResumableSampler(Sampler):
    """Seeded per-epoch shuffling, sharded over ``world_size`` ranks, resumable mid-epoch.

    Positions count samples of the epoch's one global order (the same seeded permutation on every
    rank): ``set_epoch(e, start=k)`` resumes after the first k samples of epoch e drawn by all ranks
    together, and the rest are dealt round-robin, rank r taking global positions k + r, k + r + W, ...
    A sample's augmentation seed follows its global position, so one step of W ranks with batch B
    draws the same samples, augmented alike, as one process with batch W·B, and a run resumed on
    another world size goes on with exactly the samples not yet drawn.

    ``even`` (default: ``shuffle``, i.e. training) gives every rank the same count, so DDP ranks step
    in lockstep: the last ``remaining % W`` samples of the epoch are left out, as ``drop_last`` leaves
    out a short batch. Not even (evaluation): strided slices, every sample exactly once, no padding.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, even: bool | None = None):
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.even = shuffle if even is None else even
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _positions(self) -> range:
        positions = range(self.start + self.rank, self.num_samples, self.world_size)
        if self.even:
            positions = positions[: max(self.num_samples - self.start, 0) // self.world_size]
        return positions

    def __len__(self) -> int:
        return len(self._positions())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = range(self.num_samples)
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for position in self._positions():
            yield order[position], (base + position) % 2**63


class BalancedSampler(Sampler):
    """The same number of images of every dataset in each batch (the erudite model, docs/methods/erudite.md).

    ``datasets[i]`` is sample i's dataset (0 .. D-1), P = ``per_dataset``, W = ``world_size``. Each
    dataset d has a stream: a seeded permutation of its samples followed by fresh permutations
    (cycles) as long as needed, each seeded by (seed, epoch, d, cycle). The epoch has
    R = ceil(n_largest / (P * W)) block rows; row r consumes stream positions [r*P*W, (r+1)*P*W) of
    every dataset, and rank k's block is dataset-major: P samples of dataset 0 from positions
    r*P*W + k*P ..., then P of dataset 1, and so on. Hence every consecutive P*D keys of a rank (one
    batch with ``batch_size = P * D`` and ``drop_last``) hold exactly P of each dataset, ranks never
    share a stream position (no sample twice within one pass of a dataset), the largest dataset sets
    the epoch's length, and a smaller one repeats a sample only after all its samples came up.
    ``set_epoch(e, start=k)`` (k counted over all ranks) and the ``(index, aug_seed)`` keys work as in
    ``ResumableSampler``; mid-epoch, it resumes only on the same world size.
    """

    def __init__(self, datasets: Sequence[int], per_dataset: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if per_dataset < 1:
            raise ValueError(f"BalancedSampler: per_dataset must be >= 1, got {per_dataset}")
        labels = np.asarray(datasets, dtype=np.int64)
        count = int(labels.max()) + 1 if len(labels) else 0
        self.members = [np.flatnonzero(labels == d) for d in range(count)]
        empty = [d for d, m in enumerate(self.members) if not len(m)]
        if not self.members or empty:
            raise DataError(f"balanced sampler: dataset {empty[0] if empty else 0} has no training samples")
        self.per_dataset, self.seed = per_dataset, seed
        self.rank, self.world_size = rank, world_size
        self.rows = -(-max(len(m) for m in self.members) // (per_dataset * world_size))
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """``start``: samples of the epoch already drawn by all ranks together (ranks step in lockstep)."""
        self.epoch, self.start = epoch, start // self.world_size

    def __len__(self) -> int:
        return self.rows * self.per_dataset * len(self.members) - self.start

    def _stream(self, d: int, length: int) -> np.ndarray:
        members = self.members[d]
        cycles = -(-length // len(members))
        key = [self.seed % 2**64, self.epoch, d]
        parts = [members[np.random.default_rng(key + [c]).permutation(len(members))] for c in range(cycles)]
        return np.concatenate(parts)[:length]

    def _order(self) -> list[int]:
        p, w = self.per_dataset, self.world_size
        blocks = np.stack([self._stream(d, self.rows * p * w).reshape(self.rows, w, p)[:, self.rank]
                           for d in range(len(self.members))], axis=1)  # [rows, D, P]
        return blocks.reshape(-1).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for position, index in enumerate(self._order()[self.start:], start=self.start):
            yield index, (base + position * self.world_size + self.rank) % 2**63
