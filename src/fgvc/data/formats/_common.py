"""What every reader shares: the bad-record policy, one-line file errors and the final checks.

Each error names the file (its base name for record errors, the full path for a missing file) and
the record, e.g. ``"images.txt: line 7: duplicate image id 12"``. Text files are read as UTF-8 with
or without the byte-order mark that spreadsheet programs write at the start of a CSV file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Problems:
    """The bad-record policy: raise ``DataError`` ("error") or keep the line and go on ("skip")."""

    def __init__(self, on_bad_record: str = "error") -> None:
        if on_bad_record not in ("error", "skip"):
            raise DataError(f"on_bad_record must be 'error' or 'skip', not {on_bad_record!r}")
        self.skip = on_bad_record == "skip"
        self.lines: list[str] = []

    def bad(self, line: str) -> None:
        if not self.skip:
            raise DataError(line)
        self.lines.append(line)


def require(path: str | os.PathLike, hint: str = "") -> Path:
    """The path if it exists, else a one-line DataError (with a hint on how to get the file)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found" + (f"; {hint}" if hint else ""))
    return path


def load_json(path: str | os.PathLike) -> object:
    path = require(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits, nesting too deep
        raise DataError(f"{path.name}: not readable JSON ({type(exc).__name__}: {exc})") from None
    except OSError as exc:  # a folder, no permission
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def parse_json_line(line: str) -> object:
    """One JSON value, or None if the line is not JSON (also for the errors json.loads raises
    besides JSONDecodeError: an integer of > 4300 digits, nesting too deep)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for each non-blank line of a text file."""
    path = require(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text") from None
    except OSError as exc:  # a folder, no permission
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield number, line.strip()


def read_csv(path: str | os.PathLike, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line number, row)]) of a CSV file whose header must name the ``required`` columns."""
    path = require(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or ()]
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"{path.name}: the header must name columns {','.join(required)} "
                                f"(line 1 is {','.join(header)!r})")
            reader.fieldnames = header
            return header, [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(f"{path.name}: not valid CSV ({exc})") from None
    except OSError as exc:  # a folder, no permission
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_pairs(path: str | os.PathLike, problems: Problems, expected: str) -> dict[str, str]:
    """``"<id> <rest>"`` lines as {id: rest}; malformed lines and duplicate ids are bad records.

    ``expected`` describes the line for the message, e.g. ``"<image_id> <class_id>"``.
    """
    name, table = Path(path).name, {}
    for number, line in numbered_lines(path):
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if not rest:
            problems.bad(f"{name}: line {number}: expected '{expected}', got {line!r}")
        elif key in table:
            problems.bad(f"{name}: line {number}: duplicate id {key}")
        else:
            table[key] = rest
    return table


def number(value: object, what: str, where: str, problems: Problems) -> float | None:
    """A metadata value as float, None when absent. A value of the wrong type (a latitude "abc")
    is a bad record; when skipped the record is kept with the value None. Range is not checked
    here: ``fgvc.data.metadata`` judges it, so verify can count it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, bool):
        try:
            x = float(value)  # type: ignore[arg-type]
            return None if math.isnan(x) else x
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float's range
            pass
    problems.bad(f"{where}: {what} {value!r} is not a number")
    return None


def image_exists(path: str, where: str, problems: Problems, check: bool = True) -> bool:
    """os.path.isfile (cheap, no decoding); a missing image is a bad record naming the path."""
    if not check or os.path.isfile(path):
        return True
    problems.bad(f"{where}: file {path} not found")
    return False


def integer_text(text: str) -> bool:
    """Whether ``int(text)`` reads it as written: ASCII digits with an optional minus sign.
    (``str.isdigit`` also accepts "²", which ``int`` rejects.)"""
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def finish(name: str, classes: list[str], splits: dict[str, list[Sample]],
           default_splits: tuple[str, str | None, str | None], problems: Problems,
           sources: dict[str, str] | None = None, **extra) -> DatasetSource:
    """Check that no split is empty (always fatal: even skipping cannot train on nothing) and build
    the DatasetSource. ``sources`` names the file of each split for the message."""
    sources = sources or {}
    for split, samples in splits.items():
        if not samples:
            raise DataError(f"{sources.get(split, name)}: split '{split}' has no valid records")
    missing = [s for s in default_splits if s is not None and s not in splits]
    if missing:
        raise DataError(f"{name}: split '{missing[0]}' not found (have: {', '.join(splits)})")
    return DatasetSource(name=name, classes=classes, splits=splits, default_splits=default_splits,
                         problems=problems.lines, **extra)


def absolute(root: str | os.PathLike, relative: str) -> str:
    return os.path.abspath(os.path.join(root, relative))


# --- MATLAB files (Stanford Cars, Flowers-102). Loaded with squeeze_me=True; the helpers also
# accept the unsqueezed shapes (1 x N arrays, 1 x 1 cells), so either kind of file reads the same.

def load_mat(path: str | os.PathLike) -> dict:
    import scipy.io

    path = require(path)
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, TypeError, MatReadError...
        raise DataError(f"{path.name}: not a readable .mat file ({type(exc).__name__}: {exc})") from None


def mat_variable(mat: dict, key: str, path: str | os.PathLike) -> object:
    if key not in mat:
        raise DataError(f"{Path(path).name}: no variable '{key}'")
    return mat[key]


def mat_scalar(value: object) -> object:
    """A Python scalar or str from a 1-element (possibly nested) array; None if not 1 element."""
    import numpy as np

    while isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.ravel()[0]
    return value.item() if isinstance(value, np.generic) else value


def mat_list(value: object) -> list:
    """A MATLAB vector or cell array (any shape) as a flat list of Python scalars/str."""
    import numpy as np

    return [mat_scalar(v) for v in np.asarray(value).ravel()]


def mat_records(value: object, path: str | os.PathLike, key: str) -> list[dict]:
    """A MATLAB struct array (any shape) as a list of {field: scalar}."""
    import numpy as np

    array = np.asarray(value)
    if array.dtype.names is None:
        raise DataError(f"{Path(path).name}: '{key}' is not a struct array")
    return [{field: mat_scalar(item[field]) for field in array.dtype.names} for item in array.ravel()]


def as_int(value: object) -> int | None:
    """An integral number (MATLAB stores labels as uint8 or double) as int, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def user_default_splits(splits: dict) -> tuple[str, str | None, str | None]:
    """(train, val, test) for a user's folder or manifest: train is "train"; test is "test", else
    "val" (and then val is None, so model selection uses a hold-out of train and never the split
    that is reported), else None (no test set: only the hold-out is evaluated)."""
    if "test" in splits:
        return ("train", "val" if "val" in splits else None, "test")
    return ("train", None, "val" if "val" in splits else None)
