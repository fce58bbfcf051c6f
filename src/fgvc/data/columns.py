"""Text fields of millions of records (paths, ids, dates) as one byte buffer, not millions of ``str``.

A ``StringColumn`` holds the UTF-8 bytes of all its strings in one ``uint8`` array and each string's
``[start, end)`` in two ``int64`` arrays; ``None`` entries are flagged in ``null``. Taking rows
(a hold-out, a shard of the split) copies only the start/end arrays and shares the bytes. A list of
Python strings costs ~60 bytes per object beyond its text and, read in a DataLoader worker, touches
reference counts on every page it lives on: the copy-on-read growth this layout avoids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StringColumn:
    data: np.ndarray  # uint8 [total bytes], UTF-8
    starts: np.ndarray  # int64 [N]
    ends: np.ndarray  # int64 [N]
    null: np.ndarray  # bool [N]: the entry is None

    @classmethod
    def from_strings(cls, values: Sequence[str | None]) -> StringColumn:
        null = np.fromiter((v is None for v in values), bool, len(values))
        texts = [v or "" for v in values] if null.any() else values
        joined = "".join(texts)
        if joined.isascii():  # one encode for all: a character is a byte
            lengths = np.fromiter(map(len, texts), np.int64, len(texts))
            data = np.frombuffer(joined.encode("ascii"), np.uint8)
        else:
            encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
            lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
            data = np.frombuffer(b"".join(encoded), np.uint8)
        ends = np.cumsum(lengths)
        return cls(data, ends - lengths, ends, null)

    def to_list(self) -> list[str | None]:
        """Every entry, decoded at once."""
        text = self.data.tobytes().decode("utf-8", "surrogatepass")
        if len(text) != len(self.data):  # not ASCII: positions are bytes, not characters
            return [self[i] for i in range(len(self))]
        return [None if null else text[s:e] for s, e, null in zip(self.starts.tolist(), self.ends.tolist(),
                                                                  self.null.tolist())]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> str | None:
        if self.null[i]:
            return None
        return self.data[self.starts[i]:self.ends[i]].tobytes().decode("utf-8", "surrogatepass")

    def take(self, rows: np.ndarray) -> StringColumn:
        """The column of ``rows`` (indices), sharing this column's bytes."""
        return StringColumn(self.data, self.starts[rows], self.ends[rows], self.null[rows])

    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def prefix_bytes(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``width`` bytes of every entry as ``uint8 [N, width]`` (0 past its end) and the
        mask of the bytes that exist: what vectorised parsers of fixed-layout text read."""
        offsets = np.arange(width)
        present = offsets[None, :] < self.lengths()[:, None]
        index = np.minimum(self.starts[:, None] + offsets[None, :], max(len(self.data) - 1, 0))
        window = self.data[index] if len(self.data) else np.zeros(index.shape, np.uint8)
        return np.where(present, window, 0).astype(np.uint8), present

    def rows_containing(self, byte: int) -> np.ndarray:
        """bool [N]: the entry contains ``byte``."""
        hits = np.flatnonzero(self.data == byte)
        return np.searchsorted(hits, self.ends) > np.searchsorted(hits, self.starts)
