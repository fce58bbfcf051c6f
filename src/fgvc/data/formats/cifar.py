"""CIFAR-10 and CIFAR-100, python release: the pixels live inside pickles, not in image files.

``cifar-100-python/{train,test,meta}`` and ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
are Python pickles (read with ``encoding="bytes"`` by an unpickler that builds only dicts, lists,
bytes, numbers and numeric NumPy arrays, so a tampered file runs no code): ``b"data"`` is uint8
``[N, 3·S·S]``, each row the
R, G and B planes of an S×S image (S = 32) in row-major order; ``b"fine_labels"`` and
``b"coarse_labels"`` (CIFAR-100) or ``b"labels"`` (CIFAR-10) are 0-based; ``b"filenames"`` names each
image. The meta pickle lists the class names (``b"fine_label_names"``, ``b"coarse_label_names"``,
``b"label_names"``).

No image is extracted: a record's ``path`` is its pickle and ``row`` its row, and ``image_at`` decodes
it from an array loaded once per process (``fgvc.data.dataset.load_image`` calls it; the reader's
load primes that cache, which forked DataLoader workers inherit). Splits "train" and "test", as the
papers use them; validation is a hold-out of train. CIFAR-100 ``level`` "fine" (100 classes, the
default) or "coarse" (the 20 superclasses). ``root`` is the extracted folder or the folder holding it.
"""

from __future__ import annotations

import codecs
import functools
import os
import pickle
from pathlib import Path

import numpy as np

from fgvc.data.formats._common import Problems, finish, require
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

LEVEL_KEYS = {"fine": (b"fine_labels", b"fine_label_names"),  # CIFAR-100 level -> (labels, names) keys
              "coarse": (b"coarse_labels", b"coarse_label_names")}
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _numeric_dtype(*args) -> np.dtype:
    """``numpy.dtype`` for numbers only: an object array would carry pickled objects of its own."""
    dtype = np.dtype(*args)
    if dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"a NumPy array of dtype {dtype}, not of numbers")
    return dtype


# Everything the releases' pickles (Python 2, protocol 2) and re-pickled copies (Python 3, protocols
# 2-5) refer to: NumPy arrays of numbers, and bytes written as latin-1 text. Nothing here runs code.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
            ("numpy.core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _numeric_dtype,
            ("_codecs", "encode"): codecs.encode}


class _ReleaseUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, strings, numbers and numeric NumPy arrays; refuses anything else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise _Refused(f"{module}.{name}")
        return _ALLOWED[module, name]


class _Refused(pickle.UnpicklingError):
    pass


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = _ReleaseUnpickler(f, encoding="bytes").load()
    except _Refused as exc:
        raise DataError(f"{path}: refused: the pickle asks for {exc}, which no CIFAR release holds "
                        "(loading it could run code); only dicts, lists, bytes, numbers and NumPy arrays "
                        "are read") from None
    except Exception as exc:  # noqa: BLE001 - a bad pickle raises UnpicklingError, EOFError, ValueError...
        raise DataError(f"{path}: not a readable CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: not a CIFAR python pickle (holds a {type(content).__name__}, not a dict)")
    return content


def _key(content: dict, key: bytes, path: Path) -> object:
    if key not in content:
        raise DataError(f"{path}: no key {key.decode()!r}; is this the python release of CIFAR?")
    return content[key]


@functools.lru_cache(maxsize=8)
def _load_batch(path: str, mtime_ns: int, size: int) -> tuple[dict, np.ndarray]:
    """(the pickle's dict, its images as uint8 [N, S, S, 3]); keyed by mtime and size so that a
    rewritten file is read again."""
    content = _unpickle(Path(path))
    data = np.asarray(_key(content, b"data", Path(path)))
    side = int(round((data.shape[-1] / 3) ** 0.5)) if data.ndim == 2 else 0
    if data.dtype != np.uint8 or side == 0 or 3 * side * side != data.shape[1]:
        raise DataError(f"{path}: 'data' is {data.dtype} of shape {data.shape}; expected uint8 [N, 3*S*S] "
                        "(the R, G, B planes of S x S images, 3072 values for 32 x 32)")
    return content, data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)


def load_batch(path: str | os.PathLike) -> tuple[dict, np.ndarray]:
    """A CIFAR pickle, loaded once per process: (its dict, its images as uint8 [N, S, S, 3])."""
    path = require(path).resolve()
    stat = path.stat()
    return _load_batch(str(path), stat.st_mtime_ns, stat.st_size)


def image_at(path: str | os.PathLike, row: int) -> np.ndarray:
    """Image ``row`` of a CIFAR pickle as a contiguous uint8 [S, S, 3] RGB array."""
    _, images = load_batch(path)
    if not 0 <= row < len(images):
        raise DataError(f"{path}: no image at row {row} (the file holds {len(images)})")
    return np.ascontiguousarray(images[row])


def _names(path: Path, key: bytes, hint: str) -> list[str]:
    values = _key(_unpickle(require(path, hint)), key, path)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _samples(path: Path, label_key: bytes, classes: list[str], name: str, problems: Problems) -> list[Sample]:
    """One record per row of the pickle at ``path``; a label outside the class list is a bad record."""
    content, images = load_batch(path)
    labels = np.asarray(_key(content, label_key, path)).ravel().tolist()
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(labels)} {label_key.decode()} for {len(images)} images in 'data'")
    samples = []
    for row, label in enumerate(labels):
        if not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(classes)):
            what = label_key.decode()[:-1]  # "fine_label", "label"
            problems.bad(f"{path.name}: row {row}: {what} {label!r} is not in 0..{len(classes) - 1}")
            continue
        samples.append(Sample(path=str(path), row=row, label=int(label), dataset=name,
                              id=f"{path.name}#{row}"))
    return samples


def _folder(root: str | os.PathLike, extracted: str, first: str, hint: str) -> Path:
    """``root``, or its ``extracted`` sub-folder when root is the folder the archive was extracted in."""
    root = require(root, hint)
    if not (root / first).exists() and (root / extracted).is_dir():
        root = root / extracted
    return root


def read_cifar100(root: str | os.PathLike, level: str = "fine", name: str | None = None,
                  on_bad_record: str = "error", check_images: bool = True) -> DatasetSource:
    """``check_images`` is accepted for a uniform API: the images are rows of the pickles."""
    if level not in LEVEL_KEYS:
        raise DataError(f"cifar100: data.level must be fine or coarse, not {level!r}")
    hint = "download and extract cifar-100-python.tar.gz (the python version)"
    root = _folder(root, "cifar-100-python", "train", hint)
    problems, name = Problems(on_bad_record), name or "cifar100"
    label_key, names_key = LEVEL_KEYS[level]
    classes = _names(root / "meta", names_key, hint)
    splits = {split: _samples(require(root / split, hint), label_key, classes, name, problems)
              for split in ("train", "test")}
    return finish(name, classes, splits, ("train", None, "test"), problems, {s: s for s in splits})


def read_cifar10(root: str | os.PathLike, name: str | None = None, on_bad_record: str = "error",
                 check_images: bool = True) -> DatasetSource:
    """``check_images`` is accepted for a uniform API: the images are rows of the pickles."""
    hint = "download and extract cifar-10-python.tar.gz (the python version)"
    root = _folder(root, "cifar-10-batches-py", "batches.meta", hint)
    problems, name = Problems(on_bad_record), name or "cifar10"
    classes = _names(root / "batches.meta", b"label_names", hint)
    train = [s for batch in CIFAR10_TRAIN
             for s in _samples(require(root / batch, hint), b"labels", classes, name, problems)]
    test = _samples(require(root / "test_batch", hint), b"labels", classes, name, problems)
    splits = {"train": train, "test": test}
    return finish(name, classes, splits, ("train", None, "test"), problems,
                  {"train": "data_batch_1..5", "test": "test_batch"})


LEVELS = tuple(LEVEL_KEYS)  # CIFAR-100's data.level values
FORMATS = {"cifar10": read_cifar10, "cifar100": read_cifar100}
