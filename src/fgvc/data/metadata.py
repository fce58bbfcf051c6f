"""Geo-temporal encoding of Dynamic MLP (eq. 1-2), DESIGN §4.2.

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
from collections.abc import Iterable, Sequence

import numpy as np

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


def encode_batch(samples: Sequence[Sample], use: str | Iterable[str] = USES,
                 on_invalid: str = "missing") -> tuple[np.ndarray, int]:
    """Encode all samples: ``(array [N, metadata_dim(use)] float32, number of all-zero rows)``.

    The count includes invalid values turned into "missing"; with ``on_invalid="error"`` the first
    invalid value raises ``DataError`` naming its record.
    """
    out = np.zeros((len(samples), metadata_dim(use)), dtype=np.float32)
    n_missing = 0
    for i, s in enumerate(samples):
        out[i] = encode_metadata(s.lat, s.lon, s.date, use, on_invalid, record=record_name(s))
        n_missing += out.shape[1] > 0 and not out[i].any()
    return out, int(n_missing)
