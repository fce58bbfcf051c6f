"""Checkpoints: written atomically with a checksum of their tensors, read without running code.

Writing: a temporary file in the same folder, fsync, then rename. A reader therefore sees either
the previous complete file or the new complete file, never a torn one, even if the process is killed
in the middle of ``save_atomic``; the torn temporary file such a kill leaves behind is removed by the
next successful save of the same checkpoint. A write that fails (a full disk) says which file and
what is still on disk.

Reading: ``torch.load(weights_only=True)``: a checkpoint is tensors and plain values (dicts, lists,
numbers, strings), so a file whose pickle asks for anything else — a function to call, a class to
build — is refused with one line naming it, before it can run. Checkpoints hold a SHA-256 of their
tensors (``checksum``), checked at load, so a damaged copy fails loudly instead of silently changing
results. Checkpoints of older fgvc versions (no checksum; NumPy's RNG state as a NumPy array in
``last.pt``) still load: those arrays are the one thing beyond plain values that is admitted.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fgvc.errors import FgvcError

log = logging.getLogger(__name__)

CHECKSUM_KEY = "checksum"

# NumPy's RNG state as older fgvc versions stored it in last.pt: a uint32 array, pickled by NumPy 1.x
# (numpy.core) or 2.x (numpy._core). Building these arrays calls no user code.
_LEGACY_NUMPY = [(np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                 np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]
ALLOWED_EXTRA_GLOBALS = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                         "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType")


class CheckpointError(FgvcError):
    """A checkpoint that cannot be read (missing, damaged, refused) or written."""


# --- writing -----------------------------------------------------------------------------------

def save_atomic(obj: dict, path: str | Path) -> None:
    """Write ``obj`` (plus its ``checksum``) to ``path`` atomically."""
    path = Path(path)
    obj = {**obj, CHECKSUM_KEY: tensor_checksum(obj)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {_os_reason(exc)}; {_what_survives(path)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = _write_failure(exc)
        if reason is None:
            raise
        raise CheckpointError(f"{reason} writing {path}; {_what_survives(path)}") from None
    for torn in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        torn.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _os_reason(exc: OSError) -> str:
    return "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc)).lower()


def _write_failure(exc: BaseException) -> str | None:
    """Why a write failed, for an OS error (torch.save reports one as a RuntimeError naming the
    failed write); None for anything else (an interrupt, a bug), which is re-raised as it is."""
    chain = [exc, exc.__cause__, exc.__context__]
    os_error = next((e for e in chain if isinstance(e, OSError)), None)
    if os_error is not None:
        return _os_reason(os_error)
    if isinstance(exc, RuntimeError) and "write" in str(exc).lower():  # PytorchStreamWriter failed writing
        return "the write failed (disk full or I/O error)"
    return None


def _what_survives(path: Path) -> str:
    """What a failed write left at ``path``: the previous complete checkpoint, or nothing."""
    if not path.is_file():
        return f"no previous {path.name} exists"
    try:
        state = _torch_load(path, mmap=True).get("state") or {}
    except Exception:  # noqa: BLE001 - a description only; the previous file may be of any vintage
        return f"the previous {path.name} is intact"
    step = f", step {state['step_in_epoch']}" if state.get("step_in_epoch") else ""
    return f"the previous {path.name} (epoch {state.get('epoch', '?')}{step}) is intact"


# --- checksums ---------------------------------------------------------------------------------

def _tensors(obj, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nested structure of dicts, lists and tuples, with its path, in order."""
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if key != CHECKSUM_KEY or where:
                yield from _tensors(value, f"{where}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{where}[{i}]")


def tensor_checksum(obj: dict) -> str:
    """SHA-256 over every tensor's place, dtype, shape and bytes (``sha256:<hex>``)."""
    digest = hashlib.sha256()
    for where, tensor in _tensors(obj):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{where}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return f"sha256:{digest.hexdigest()}"


# --- reading -----------------------------------------------------------------------------------

def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's content, read with ``weights_only=True`` and its checksum verified."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = _torch_load(path)
    except Exception as exc:  # torch raises several types for a bad zip/pickle
        refused = _refused_globals(path, exc)
        if refused:
            raise CheckpointError(
                f"{path}: refused: its pickle asks for {', '.join(refused)}, which no fgvc checkpoint holds "
                "(loading it could run code); fgvc reads only tensors and plain values") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not an fgvc checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    stored = ckpt.pop(CHECKSUM_KEY, None)
    if stored is None:
        log.debug("%s: no checksum (written by an older fgvc version)", path)
    elif stored != tensor_checksum(ckpt):
        raise CheckpointError(f"{path}: damaged: its tensors no longer match the checksum stored with them "
                              "(bit rot or an incomplete copy); use another copy of the file")
    return ckpt


def _torch_load(path: Path, **options):
    with torch.serialization.safe_globals(_LEGACY_NUMPY):
        return torch.load(path, map_location="cpu", weights_only=True, **options)


def _refused_globals(path: Path, exc: Exception) -> list[str]:
    """The globals a weights-only load refused, from the pickle itself or else torch's message."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: fall back on the message
        names = []
    names = [n for n in names if n not in ALLOWED_EXTRA_GLOBALS]
    if names or "Weights only load failed" not in str(exc):
        return names
    found = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(exc))
    return [found.group(1) or found.group(2)] if found else ["a global outside the allowed set"]


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
