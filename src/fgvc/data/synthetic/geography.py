"""Where and when a species is seen (iNat domain only; the real multi-domain formats carry no metadata)."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from fgvc.data.synthetic.seeds import key_rng


@dataclass
class Range:
    """Where and when a species is seen: blobs (lat, lon, sigma in degrees, weight) and a season."""

    blobs: list[tuple[float, float, float, float]]
    peak: float  # fraction of the year of the activity peak
    spread: float  # standard deviation in fractions of the year (wrapped around the year)


def habitats(seed: int, count: int, min_sep_deg: float = 40.0) -> list[tuple[float, float]]:
    """Centres shared by all genera, drawn one by one (each from its own key, rejecting close ones)."""
    centres: list[np.ndarray] = []
    out = []
    for k in range(count):
        rng = key_rng(seed, "inat", "habitat", k)
        for attempt in range(200):
            # uniform on the sphere between 50 S and 65 N, where most land and observers are
            z = rng.uniform(-math.sin(math.radians(50)), math.sin(math.radians(65)))
            lat = math.degrees(math.asin(z))
            lon = rng.uniform(-180, 180)
            p = _unit_vector(lat, lon)
            far = all(math.degrees(math.acos(min(1.0, float(p @ q)))) >= min_sep_deg for q in centres)
            if far or attempt == 199:
                break
        centres.append(p)
        out.append((lat, lon))
    return out


def species_ranges(seed: int, genera: int, species_per_genus: int) -> list[Range]:
    """Ranges for every class (genus-major). Siblings get distinct (habitat, season slot) pairs.

    A genus spreads its species over ``n_h`` habitats x ``n_s`` seasonal slots; all genera draw
    their habitats from one shared pool with independent season offsets, so at a given place and
    time several genera are active while only one species of each is likely.
    """
    n_h = math.ceil(math.sqrt(species_per_genus))
    n_s = math.ceil(species_per_genus / n_h)
    pool = habitats(seed, n_h + 1)
    ranges = []
    for g in range(genera):
        rng = key_rng(seed, "inat", "range", g, species_per_genus)
        order = rng.permutation(len(pool))
        offset = rng.uniform()
        for j in range(species_per_genus):
            home = pool[order[j % n_h]]
            blobs = [(home[0], home[1], rng.uniform(5, 10), 1.0)]
            if rng.random() < 0.5:  # a second, smaller population where no sibling lives
                other = pool[order[n_h + int(rng.integers(len(pool) - n_h))]]
                blobs.append((other[0], other[1], rng.uniform(4, 8), rng.uniform(0.2, 0.5)))
            peak = (offset + (j // n_h) / n_s + rng.normal(0, 0.02)) % 1.0
            ranges.append(Range(blobs, peak, rng.uniform(0.07, 0.11) * 2 / max(n_s, 2)))
    return ranges


def _unit_vector(lat: float, lon: float) -> np.ndarray:
    la, lo = math.radians(lat), math.radians(lon)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


def sample_location(rng: np.random.Generator, r: Range) -> tuple[float, float]:
    """A point from a blob: a Gaussian step in the tangent plane at the centre, back onto the sphere."""
    return sample_place(rng, r)[1:]


def sample_place(rng: np.random.Generator, r: Range) -> tuple[int, float, float]:
    """``sample_location`` that also says which blob the point came from (its index in ``r.blobs``)."""
    weights = np.array([b[3] for b in r.blobs])
    blob = int(rng.choice(len(r.blobs), p=weights / weights.sum()))
    lat, lon, sigma, _ = r.blobs[blob]
    c = _unit_vector(lat, lon)
    e1 = np.cross([0.0, 0.0, 1.0], c)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    step = np.radians(sigma) * rng.normal(size=2)
    p = c + step[0] * e1 + step[1] * e2
    p /= np.linalg.norm(p)
    return blob, math.degrees(math.asin(p[2])), math.degrees(math.atan2(p[1], p[0]))


def sample_date(rng: np.random.Generator, r: Range, first_year: int, last_year: int) -> dt.datetime:
    """A date in a random year: day of year from a wrapped normal around the peak (leap years counted)."""
    year = int(rng.integers(first_year, last_year + 1))
    days = 366 if calendar.isleap(year) else 365
    frac = (r.peak + rng.normal(0, r.spread)) % 1.0
    day = min(int(frac * days), days - 1)
    start = dt.datetime(year, 1, 1, int(rng.integers(6, 20)), int(rng.integers(0, 60)))
    return start + dt.timedelta(days=day)

