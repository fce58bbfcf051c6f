"""Samplers whose position can be saved and restored, so a resumed run sees the same batches.

The training sampler yields ``(index, aug_seed)`` pairs: each sample's augmentation is seeded from
(run seed, epoch, position in the epoch), which makes the augmented pixels independent of worker
count, worker scheduling and where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    """Seeded per-epoch shuffling, sharded over ``world_size`` ranks, resumable mid-epoch.

    ``set_epoch(e, start=k)`` makes the next iteration start at this rank's k-th sample of epoch e.
    With several ranks the permutation is padded by wrapping, as DistributedSampler does.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size) - self.start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        per_rank = -(-self.num_samples // self.world_size)
        order += order[: per_rank * self.world_size - len(order)]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for position, index in enumerate(self._order()[self.start:], start=self.start):
            yield index, (base + position * self.world_size + self.rank) % 2**63
