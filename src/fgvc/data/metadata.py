"""Geo-temporal encoding of Dynamic MLP (eq. 1-2); docs/formats.md.

Latitude, longitude and date are each scaled to [-1, 1] (lat/90, lon/180, date as a fraction of its
year), concatenated in the order (lat, lon, date) for the components in ``use``, and mapped to
``[sin(pi*x) for x] + [cos(pi*x) for x]``: 6 values with both, 4 with "geo" only, 2 with "temporal" only.

A sample whose used components are missing (None, NaN, empty string) gets the all-zero vector, the
paper's rule. An invalid value (|lat| > 90, |lon| > 180, an unparseable date, a year fraction outside
[0, 1]) becomes "missing" too with ``on_invalid="missing"``, or raises ``DataError`` with
``on_invalid="error"``. ``check_metadata`` tells which case a sample is in, so ``fgvc data verify``
and the loader can count them and name the record.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fgvc.data.columns import StringColumn
from fgvc.data.records import DateLike, Sample
from fgvc.errors import DataError

USES = ("geo", "temporal")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?")


class _Missing(Exception):
    pass


class _Invalid(Exception):
    pass


def _uses(use: str | Iterable[str]) -> tuple[bool, bool]:
    names = {use} if isinstance(use, str) else set(use)
    unknown = names - set(USES)
    if unknown:
        raise ValueError(f"unknown metadata {sorted(unknown)}; use any of {list(USES)}")
    return "geo" in names, "temporal" in names


def metadata_dim(use: str | Iterable[str]) -> int:
    """Length of the encoded vector: 2 per scaled value (sin and cos)."""
    geo, temporal = _uses(use)
    return 2 * (2 * geo + temporal)


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise _Invalid(f"{what} {value!r} is not a number")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Invalid(f"{what} {value!r} is not a number") from None


def _scaled_coordinate(value: object, what: str, limit: float) -> float:
    if _is_missing(value):
        raise _Missing
    x = _number(value, what)
    if not abs(x) <= limit:  # also catches inf
        raise _Invalid(f"{what} {value!r} is outside [-{limit:g}, {limit:g}]")
    return x / limit


def date_fraction(date: DateLike) -> float:
    """The date scaled to [-1, 1] as in the official Dynamic MLP code (``get_scaled_date_ratio``).

    ``day_of_year`` is 1-based (Jan 1 = 1, Dec 31 = days_in_year, 366 in leap years), so the value is
    ``day_of_year / days_in_year * 2 - 1``: Dec 31 maps to 1, i.e. the same point of the circle as
    the start of the year. Strings are ISO "YYYY-MM-DD" optionally followed by a time ("2021-06-01
    10:00:00+00:00" as in iNat 2021); like the official code only the date part as written is used
    (no time-zone conversion). A float in [0, 1] is already a fraction of the year (iNat 2017/2018
    ``date_c``) and maps to ``date_c * 2 - 1``. Raises ``ValueError`` naming the value when invalid.
    """
    try:
        return _scaled_date(date)
    except (_Missing, _Invalid) as exc:
        raise ValueError(str(exc) or f"date {date!r} is missing") from None


def _scaled_date(date: DateLike) -> float:
    if _is_missing(date):
        raise _Missing
    if isinstance(date, str):
        match = _ISO_DATE.fullmatch(date.strip())
        if not match:
            raise _Invalid(f"date {date!r} is not YYYY-MM-DD")
        try:
            date = dt.date(*(int(part) for part in match.groups()))
        except ValueError:
            raise _Invalid(f"date {date!r} is not a calendar date") from None
    if isinstance(date, dt.date):  # datetime.datetime is a subclass
        days_in_year = 366 if _is_leap(date.year) else 365
        return date.timetuple().tm_yday / days_in_year * 2 - 1
    fraction = _number(date, "date")
    if not 0 <= fraction <= 1:
        raise _Invalid(f"date fraction {date!r} is outside [0, 1]")
    return fraction * 2 - 1


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _scaled(lat: object, lon: object, date: DateLike, use: str | Iterable[str]) -> list[float]:
    """The values in [-1, 1] to encode. Raises _Invalid for any invalid used value, else _Missing."""
    geo, temporal = _uses(use)
    parts = []
    if geo:
        parts += [lambda: _scaled_coordinate(lat, "latitude", 90.0),
                  lambda: _scaled_coordinate(lon, "longitude", 180.0)]
    if temporal:
        parts.append(lambda: _scaled_date(date))
    values, missing = [], False
    for part in parts:  # look at every part so an invalid value is not hidden by a missing one
        try:
            values.append(part())
        except _Missing:
            missing = True
    if missing:
        raise _Missing
    return values


def encode_metadata(lat: object, lon: object, date: DateLike, use: str | Iterable[str] = USES,
                    on_invalid: str = "missing", record: str = "") -> np.ndarray:
    """The float32 vector ``[sin(pi*x)...] + [cos(pi*x)...]`` of the scaled (lat, lon, date) in ``use``.

    Missing values give zeros; invalid ones give zeros (``on_invalid="missing"``) or raise
    ``DataError`` (``"error"``) whose message starts with ``record`` when given.
    """
    if on_invalid not in ("missing", "error"):
        raise ValueError(f"on_invalid must be 'missing' or 'error', not {on_invalid!r}")
    try:
        x = np.asarray(_scaled(lat, lon, date, use), dtype=np.float64)
    except _Missing:
        return np.zeros(metadata_dim(use), dtype=np.float32)
    except _Invalid as exc:
        if on_invalid == "error":
            raise DataError(f"{record}: {exc}" if record else f"invalid metadata: {exc}") from None
        return np.zeros(metadata_dim(use), dtype=np.float32)
    return np.concatenate([np.sin(np.pi * x), np.cos(np.pi * x)]).astype(np.float32)


def record_name(sample: Sample) -> str:
    """How errors name a sample: "<dataset>: record <id>" (the id of the annotation file)."""
    return f"{sample.dataset or 'dataset'}: record {sample.id or sample.path}"


def check_metadata(sample: Sample, use: str | Iterable[str]) -> str | None:
    """None if the sample's used metadata is valid, else "missing" or "invalid: <why>"."""
    try:
        _scaled(sample.lat, sample.lon, sample.date, use)
    except _Missing:
        return "missing"
    except _Invalid as exc:
        return f"invalid: {exc}"
    return None


# --- whole columns at once ----------------------------------------------------------------------
# What a dataset of millions of records needs before its first step: the same values as
# ``encode_metadata`` row by row, computed with NumPy over each column. Only values outside the
# common forms (numbers, ``None``, "YYYY-MM-DD..." ASCII text) go through the per-value code above,
# so the two cannot disagree.

OK, MISSING, INVALID = 0, 1, 2  # status of one value; a row's verdict is the worst of its used values
_COMPONENTS = {"geo": (0, 1), "temporal": (2,)}
_DAYS_BEFORE_MONTH = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_CHUNK = 1 << 18  # rows parsed at a time: bounds the temporary [rows, 11] arrays


@dataclass(frozen=True)
class Scaled:
    """lat/90, lon/180 and the date in [-1, 1] of N records (``values [N, 3]`` float64, 0 where not
    OK) and each value's status (``status [N, 3]`` uint8: OK, MISSING or INVALID)."""

    values: np.ndarray
    status: np.ndarray

    def verdicts(self, use: str | Iterable[str] = USES) -> np.ndarray:
        """uint8 [N]: INVALID if any used value is invalid, else MISSING if any is missing, else OK
        (``check_metadata``'s answer for each row)."""
        return self.status[:, _columns(use)].max(axis=1, initial=OK)

    def encode(self, use: str | Iterable[str] = USES) -> np.ndarray:
        """float32 [N, metadata_dim(use)]: ``encode_metadata`` of every row (zeros unless OK)."""
        columns = _columns(use)
        x = self.values[:, columns]
        out = np.concatenate([np.sin(np.pi * x), np.cos(np.pi * x)], axis=1).astype(np.float32)
        out[self.verdicts(use) != OK] = 0
        return out


def _columns(use: str | Iterable[str]) -> list[int]:
    geo, temporal = _uses(use)
    return [*(_COMPONENTS["geo"] if geo else ()), *(_COMPONENTS["temporal"] if temporal else ())]


def scale_columns(lat: Sequence | np.ndarray, lon: Sequence | np.ndarray,
                  date: Sequence | np.ndarray | StringColumn) -> Scaled:
    """Scale N records' metadata. ``lat``/``lon``: floats with NaN (or None) for missing; ``date``: a
    ``StringColumn`` of ISO texts, a float array of year fractions, or any sequence of ``DateLike``."""
    parts = [_coordinates(lat, "latitude", 90.0), _coordinates(lon, "longitude", 180.0), _dates(date)]
    return Scaled(np.stack([v for v, _ in parts], axis=1), np.stack([s for _, s in parts], axis=1))


def _coordinates(column, what: str, limit: float) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(column, np.ndarray) and column.dtype.kind in "fiu"):  # Python values
        plain = np.fromiter((v is None or type(v) is float for v in column), bool, len(column))
        if plain.all():  # what the readers give: float or None
            column = np.fromiter((np.nan if v is None else v for v in column), np.float64, len(column))
    if isinstance(column, np.ndarray) and column.dtype.kind in "fiu":
        x = column.astype(np.float64)
        status = np.where(np.isnan(x), MISSING, np.where(np.abs(x) <= limit, OK, INVALID)).astype(np.uint8)
        return np.where(status == OK, x / limit, 0.0), status
    values, status = np.zeros(len(column)), np.zeros(len(column), np.uint8)
    for i, value in enumerate(column):
        try:
            values[i] = _scaled_coordinate(value, what, limit)
        except _Missing:
            status[i] = MISSING
        except _Invalid:
            status[i] = INVALID
    return values, status


def _dates(column) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(column, StringColumn):
        return _iso_dates(column)
    if isinstance(column, np.ndarray) and column.dtype.kind in "fiu":
        f = column.astype(np.float64)
        status = np.where(np.isnan(f), MISSING, np.where((f >= 0) & (f <= 1), OK, INVALID)).astype(np.uint8)
        return np.where(status == OK, f * 2 - 1, 0.0), status
    values, status = np.zeros(len(column)), np.zeros(len(column), np.uint8)
    texts = [(i, d) for i, d in enumerate(column) if isinstance(d, str)]
    if texts:  # the common case, vectorised; the rest (numbers, dates, None, junk) value by value
        rows = np.array([i for i, _ in texts])
        values[rows], status[rows] = _iso_dates(StringColumn.from_strings([d for _, d in texts]))
    for i, d in enumerate(column):
        if not isinstance(d, str):
            values[i], status[i] = _one_date(d)
    return values, status


def _one_date(date: DateLike) -> tuple[float, int]:
    try:
        return _scaled_date(date), OK
    except _Missing:
        return 0.0, MISSING
    except _Invalid:
        return 0.0, INVALID


def _iso_dates(texts: StringColumn) -> tuple[np.ndarray, np.ndarray]:
    """Dates of "YYYY-MM-DD" texts (optionally followed by " " or "T" and anything) parsed as arrays;
    any other text (blank, padded, non-ASCII digits, a line break...) by ``_scaled_date``."""
    n = len(texts)
    values, status = np.zeros(n), np.full(n, MISSING, np.uint8)
    line_break = texts.rows_containing(ord("\n"))
    for begin in range(0, n, _CHUNK):
        rows = slice(begin, min(begin + _CHUNK, n))
        head, present = texts.take(rows).prefix_bytes(11)
        digits = head[:, [0, 1, 2, 3, 5, 6, 8, 9]].astype(np.int64) - ord("0")
        fast = (present[:, 9] & ((digits >= 0) & (digits <= 9)).all(1) & (head[:, 4] == ord("-"))
                & (head[:, 7] == ord("-")) & (~present[:, 10] | np.isin(head[:, 10], (ord(" "), ord("T"))))
                & ~line_break[rows] & ~texts.null[rows])
        year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
        month, day = digits[:, 4] * 10 + digits[:, 5], digits[:, 6] * 10 + digits[:, 7]
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        m = np.clip(month, 1, 12) - 1
        valid = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= _DAYS_IN_MONTH[m] + (leap & (m == 1)))
        day_of_year = _DAYS_BEFORE_MONTH[m] + day + (leap & (m >= 2))
        scaled = day_of_year / (365 + leap) * 2 - 1
        values[rows] = np.where(fast & valid, scaled, 0.0)
        status[rows] = np.where(fast, np.where(valid, OK, INVALID), MISSING)
        for i in np.flatnonzero(~fast & ~texts.null[rows]) + begin:
            values[i], status[i] = _one_date(texts[i])
    return values, status


def encode_batch(samples: Sequence[Sample], use: str | Iterable[str] = USES,
                 on_invalid: str = "missing") -> tuple[np.ndarray, int]:
    """Encode all samples: ``(array [N, metadata_dim(use)] float32, number of all-zero rows)``.

    The count includes invalid values turned into "missing"; with ``on_invalid="error"`` the first
    invalid value raises ``DataError`` naming its record.
    """
    scaled = scale_columns([s.lat for s in samples], [s.lon for s in samples], [s.date for s in samples])
    return encode_scaled(scaled, use, on_invalid, lambda i: samples[i])


def encode_scaled(scaled: Scaled, use: str | Iterable[str], on_invalid: str,
                  sample_at: Callable[[int], Sample]) -> tuple[np.ndarray, int]:
    """``encode_batch`` from scaled columns; ``sample_at(i)`` names the record of an invalid row."""
    if on_invalid not in ("missing", "error"):
        raise ValueError(f"on_invalid must be 'missing' or 'error', not {on_invalid!r}")
    if metadata_dim(use) == 0:
        return np.zeros((len(scaled.values), 0), np.float32), 0
    verdicts = scaled.verdicts(use)
    invalid = np.flatnonzero(verdicts == INVALID)
    if on_invalid == "error" and len(invalid):
        sample = sample_at(int(invalid[0]))
        why = check_metadata(sample, use) or "invalid: ?"
        raise DataError(f"{record_name(sample)}: {why.removeprefix('invalid: ')}")
    return scaled.encode(use), int((verdicts != OK).sum())
