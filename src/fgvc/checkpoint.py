"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename.

A reader therefore sees either the previous complete file or the new complete file, never a torn
one, even if the process is killed in the middle of ``save``. The torn temporary file such a kill
leaves behind is removed by the next successful save of the same checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from fgvc.errors import FgvcError


def save_atomic(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for torn in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        torn.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FgvcError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a bad zip/pickle
        raise FgvcError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
