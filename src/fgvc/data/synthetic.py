"""The procedural fine-grained benchmark (DESIGN §5), written to disk in the real formats.

Why procedural: no data set can be downloaded on a fresh machine, yet every method must be trainable
and testable on a CPU in minutes, through the same readers as real data. The generator is honest
about what it shows:

* Classes come in genera. Species of one genus share a shape and a palette and differ only in small
  local details (a patch's colour, a stripe count, a few spots); pose, scale, position, background
  clutter, lighting and noise vary freely per image. Images alone tell genera apart but struggle with
  species.
* Each species lives in one or more Gaussian blobs on the sphere and is active around a peak day of
  the year. Siblings of one genus live in different places or seasons; genera share places and
  seasons. Metadata alone therefore cannot tell genera apart, and images plus metadata can classify.
* Every image is drawn from its own generator seeded by (seed, domain, class, split, index), so the
  same options give the same bytes and changing a count does not reshuffle the other images.

``write_inat`` writes the single-domain set in the iNaturalist-2021 layout, ``write_multidomain`` four
visually distinct domains in the CUB-200-2011, Stanford Cars, FGVC-Aircraft and Flowers-102 layouts,
``write_benchmark`` both plus a ``synth.json`` summary (and does nothing when that summary matches).
"""

from __future__ import annotations

import calendar
import colorsys
import dataclasses
import datetime as dt
import io
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from fgvc.errors import ConfigError

FORMAT_VERSION = 1
MULTI_DOMAINS = ("cub", "cars", "aircraft", "flowers")
BANNER_HEIGHT = 20  # FGVC-Aircraft: the bottom 20 pixel rows are a copyright banner
RGB = tuple[float, float, float]  # a colour, each channel in [0, 1]
Box = tuple[float, float, float, float]  # x, y, width, height in pixels


@dataclass
class SynthOptions:
    """Everything that decides the benchmark; the CLI exposes each field as ``--field-name``."""

    # Master seed: same options -> byte-identical annotation files and identical pixels.
    seed: int = 0
    # Side of the square images in pixels (aircraft images get BANNER_HEIGHT extra rows).
    size: int = 64
    # JPEG quality of the written images.
    jpeg_quality: int = 90
    # iNat domain: number of genera and of species per genus (classes = genera * species_per_genus).
    genera: int = 8
    species_per_genus: int = 4
    # iNat domain: images per class in train.json, in train_mini.json (a subset of train) and in val.json.
    train_per_class: int = 25
    train_mini_per_class: int = 10
    val_per_class: int = 8
    # iNat domain: share of images with missing metadata (null location, null date, or both).
    missing_metadata_fraction: float = 0.1
    # iNat domain: observation dates are spread over these years (inclusive; 2016 and 2020 are leap years).
    first_year: int = 2016
    last_year: int = 2020
    # Multi-domain: which domains to write (any of cub, cars, aircraft, flowers).
    domains: tuple[str, ...] = MULTI_DOMAINS
    # Multi-domain: genera and species per genus in each domain, and images per class.
    domain_genera: int = 3
    domain_species_per_genus: int = 3
    domain_images_per_class: int = 30
    # Multi-domain: share of each class's images in the test split; formats with an official
    # validation split (aircraft, flowers) take the same share again for val.
    domain_test_fraction: float = 1 / 3
    # Visibility of the species-level details (colour steps, stripe and spot contrast): 0 makes
    # species of a genus indistinguishable from pixels, larger values make them easier.
    detail_strength: float = 1.0
    # Amplitude of the per-image nuisances (pose, scale, clutter, lighting, noise): 0 turns them off.
    nuisance: float = 1.0

    def __post_init__(self) -> None:
        self.domains = tuple(self.domains)
        self.validate()

    def validate(self) -> None:
        """Reject impossible values with one line naming the option (the CLI prints it as is)."""
        positive = ("size", "genera", "species_per_genus", "train_per_class", "val_per_class",
                    "domain_genera", "domain_species_per_genus", "domain_images_per_class")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"synthetic option {name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"synthetic option seed must be >= 0, got {self.seed}")
        if self.size < 16:
            raise ConfigError(f"synthetic option size must be >= 16 pixels, got {self.size}")
        if not 0 <= self.train_mini_per_class <= self.train_per_class:
            raise ConfigError("synthetic option train_mini_per_class must be between 0 and train_per_class, "
                              f"got {self.train_mini_per_class}")
        if not 0.0 <= self.missing_metadata_fraction <= 1.0:
            raise ConfigError("synthetic option missing_metadata_fraction must be in [0, 1], "
                              f"got {self.missing_metadata_fraction}")
        if not 0.0 < self.domain_test_fraction < 0.5:
            raise ConfigError("synthetic option domain_test_fraction must be in (0, 0.5), "
                              f"got {self.domain_test_fraction}")
        if self.last_year < self.first_year:
            raise ConfigError(f"synthetic option last_year ({self.last_year}) is before "
                              f"first_year ({self.first_year})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"synthetic option jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.detail_strength < 0 or self.nuisance < 0:
            raise ConfigError("synthetic options detail_strength and nuisance must be >= 0")
        unknown = [d for d in self.domains if d not in MULTI_DOMAINS]
        if unknown or not self.domains:
            raise ConfigError("synthetic option domains must be a non-empty subset of "
                              f"{', '.join(MULTI_DOMAINS)}, "
                              f"got {', '.join(self.domains) or 'nothing'}")


# --------------------------------------------------------------------------------------------------
# Deterministic randomness


SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _seed(*key: int | str) -> np.random.SeedSequence:
    """The seed of one named thing; strings are turned into integers stably so keys can be readable."""
    words = [k if isinstance(k, int) else int.from_bytes(k.encode(), "little") for k in key]
    return np.random.SeedSequence(words)


def _rng(*key: int | str) -> np.random.Generator:
    return np.random.default_rng(_seed(*key))


# --------------------------------------------------------------------------------------------------
# Drawing: soft-edged parts in object coordinates, posed on a canvas


@dataclass(frozen=True)
class Part:
    """One soft-edged shape of an object, in object coordinates (x right, y down, object ~[-1, 1]²).

    A superellipse ``|u/rx|^p + |v/ry|^p <= 1`` (p=2 an ellipse, p>=4 a rounded box), or with
    ``petals > 0`` a rosette ``r <= rx * (base + (1 - base) |cos(petals θ / 2)|^p)``. ``stripes``
    paints that many bands of ``stripe_colour`` across the part (along u, or radially), which is how
    most species-level details are drawn.
    """

    cx: float
    cy: float
    rx: float
    ry: float
    colour: RGB
    angle: float = 0.0
    power: float = 2.0
    petals: int = 0
    base: float = 0.3
    stripes: float = 0.0
    stripe_colour: RGB = (0.0, 0.0, 0.0)
    stripe_radial: bool = False
    object: bool = True  # counts towards the bounding box (clutter does not)


def _grid(size: int, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Canvas coordinates of pixel centres: x in [-1, 1] across the width, y with the same scale."""
    height = height or size
    xs = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    ys = (np.arange(height, dtype=np.float32) + 0.5) / size * 2 - 1
    return np.meshgrid(xs, ys)


def _canvas_map(size: int) -> np.ndarray:
    """The 2x3 affine map from pixel (column, row) to canvas coordinates ([-1, 1] across the width)."""
    k = 2 / size
    return np.array([[k, 0, k / 2 - 1], [0, k, k / 2 - 1]])


def _part_alpha(part: Part, x: np.ndarray, y: np.ndarray,
                pixel: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Coverage in [0, 1] of a part (anti-aliased over one pixel) and, if striped, its stripe coordinate."""
    c, s = math.cos(part.angle), math.sin(part.angle)
    dx, dy = x - part.cx, y - part.cy
    u, v = c * dx + s * dy, -s * dx + c * dy
    if part.petals:
        r = np.hypot(u, v)
        petal = np.abs(np.cos(part.petals / 2 * np.arctan2(v, u))) ** part.power
        dist = r - part.rx * (part.base + (1 - part.base) * petal)
        along = r / part.rx
    else:
        if part.power == 2:
            q = np.sqrt((u / part.rx) ** 2 + (v / part.ry) ** 2)
        else:
            q = (np.abs(u / part.rx) ** part.power + np.abs(v / part.ry) ** part.power) ** (1 / part.power)
        dist = (q - 1) * min(part.rx, part.ry)
        along = None
        if part.stripes:
            along = np.hypot(u, v) / part.rx if part.stripe_radial else (u / part.rx + 1) / 2
    return np.clip(0.5 - dist / pixel, 0.0, 1.0), along


def _paint(img: np.ndarray, parts: list[Part], to_object: np.ndarray,
           jitter: np.ndarray | None = None) -> np.ndarray:
    """Composite parts in order onto ``img``; return the object's coverage (for bounding boxes).

    ``to_object`` (2x3) maps pixel (column, row) to object coordinates; each part is evaluated only
    inside the pixel window of its bounding square, which keeps an image at a few milliseconds.
    """
    h, w = img.shape[:2]
    cover = np.zeros((h, w), np.float32)
    (a, b, e), (c, d, f) = to_object.tolist()
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det  # object -> pixel (linear part)
    pixel = math.sqrt(abs(det))  # one pixel's side in object units
    for i, part in enumerate(parts):
        r = max(part.rx, part.ry) * 1.05
        px, py = ia * (part.cx - e) + ib * (part.cy - f), ic * (part.cx - e) + id_ * (part.cy - f)
        ex, ey = r * (abs(ia) + abs(ib)), r * (abs(ic) + abs(id_))
        c0, c1 = max(int(px - ex) - 1, 0), min(int(px + ex) + 2, w)
        r0, r1 = max(int(py - ey) - 1, 0), min(int(py + ey) + 2, h)
        if c0 >= c1 or r0 >= r1:
            continue
        rows = np.arange(r0, r1, dtype=np.float32)[:, None]
        cols = np.arange(c0, c1, dtype=np.float32)[None, :]
        alpha, along = _part_alpha(part, a * cols + b * rows + e, c * cols + d * rows + f, pixel)
        colour = np.asarray(part.colour, np.float32)
        if jitter is not None:
            colour = colour + jitter[i % len(jitter)]
        if part.stripes > 0:
            band = np.clip(np.sin(np.pi * part.stripes * along) * 2.5 + 0.5, 0, 1)[..., None]
            colour = colour * (1 - band) + np.asarray(part.stripe_colour, np.float32) * band
        window = img[r0:r1, c0:c1]
        window += alpha[..., None] * (colour - window)
        if part.object:
            np.maximum(cover[r0:r1, c0:c1], alpha, out=cover[r0:r1, c0:c1])
    return cover


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int,
                  channels: int = 3) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid bilinearly upsampled (lighting, textures)."""
    h, w = shape
    grid = rng.uniform(-1, 1, (cells, cells, channels)).astype(np.float32)

    def interp(n: int) -> np.ndarray:
        pos = np.linspace(0, cells - 1, n, dtype=np.float32)
        lo = np.minimum(pos.astype(int), cells - 2)
        t = pos - lo
        m = np.zeros((n, cells), np.float32)
        m[np.arange(n), lo] = 1 - t
        m[np.arange(n), lo + 1] = t
        return m

    rows = np.tensordot(interp(h), grid, axes=(1, 0))  # (h, cells, channels)
    return np.tensordot(rows, interp(w), axes=(1, 1)).transpose(0, 2, 1)


def _hsv(h: float, s: float, v: float) -> RGB:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def _shift(colour: RGB, direction: np.ndarray, amount: float) -> RGB:
    """A colour moved along a unit RGB direction (the species colour steps).

    The start is first pulled into [0.25, 0.75]^3 so that steps of up to 0.25 are never clipped:
    two species' colours can never collapse onto one by saturating at the cube's edge.
    """
    out = np.clip(np.clip(np.asarray(colour), 0.25, 0.75) + amount * direction, 0.0, 1.0)
    return tuple(float(c) for c in out)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """From colour a towards b by t (capped at b): how a detail's contrast follows detail_strength."""
    t = min(t, 1.0)
    return tuple(float(x + t * (y - x)) for x, y in zip(a, b, strict=True))


def _unit(rng: np.random.Generator) -> np.ndarray:
    d = rng.normal(size=3)
    return d / np.linalg.norm(d)


# --------------------------------------------------------------------------------------------------
# Genera and species: a shape family per domain, three detail axes per genus


@dataclass
class Genus:
    """Shared by the species of a genus: shape and palette (in ``params``) and the detail tables."""

    params: dict
    codes: list[tuple[int, int, int]]  # per species: its level on each of the three detail axes


@dataclass(frozen=True)
class Domain:
    """A visual world: how a genus is drawn, how a species' parts follow, the background, the pose."""

    name: str
    make_genus: Callable[[np.random.Generator], dict]
    make_parts: Callable[[dict, tuple[int, int, int], float], list[Part]]
    background: Callable[[np.random.Generator, int, int, float], np.ndarray]
    rotation: float  # max |rotation| in radians at nuisance 1
    flip: bool  # random horizontal flips
    scale: tuple[float, float]  # object scale on the canvas


def _species_codes(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """Distinct detail levels for n species on three axes; siblings may differ on a single axis."""
    levels = 2
    while levels**3 < n:
        levels += 1
    chosen = rng.choice(levels**3, size=n, replace=False)
    return [(int(c % levels), int(c // levels % levels), int(c // levels**2)) for c in chosen]


def _level(value: int, count_levels: int = 2) -> float:
    """Map a level to a signed step around the genus' base value (-0.5 / +0.5 for two levels)."""
    return value - (count_levels - 1) / 2 if count_levels > 1 else 0.0


# ---- iNat: beetle-like insects seen from above, on soil and leaf litter


def _insect_genus(rng: np.random.Generator) -> dict:
    hue = rng.uniform()
    return {
        "length": rng.uniform(0.62, 0.8), "width": rng.uniform(0.5, 0.8), "power": rng.uniform(2.0, 3.4),
        "pronotum": rng.uniform(0.45, 0.7), "head": rng.uniform(0.14, 0.22),
        "leg_angle": rng.uniform(0.3, 0.8), "leg_len": rng.uniform(0.25, 0.4),
        "antenna": rng.uniform(0.25, 0.45),
        "body": _hsv(hue, rng.uniform(0.5, 0.9), rng.uniform(0.45, 0.85)),
        "pron": _hsv(hue + rng.uniform(0.15, 0.5), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.8)),
        "dark": _hsv(hue, 0.5, rng.uniform(0.08, 0.2)),
        "spot": _hsv(hue + 0.5, rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.95)),
        "spot_r": rng.uniform(0.07, 0.1), "spots0": int(rng.integers(1, 3)),
        "patch_dir": _unit(rng), "stripes0": rng.uniform(2.5, 4.0), "stripe_dir": _unit(rng),
    }


def _insect_parts(g: dict, code: tuple[int, int, int], strength: float) -> list[Part]:
    spots, patch, stripes = code
    L, W = g["length"], g["length"] * g["width"]
    dark = g["dark"]
    parts = []
    for side in (-1, 1):  # legs and antennae under the body
        for k, y in enumerate((-0.25, 0.05, 0.35)):
            ang = side * (g["leg_angle"] + 0.35 * (k - 1)) + (0 if side > 0 else math.pi)
            parts.append(Part(side * W * 0.9, y * L, g["leg_len"], 0.03, dark, angle=ang))
        parts.append(Part(side * 0.12, -L - g["pronotum"] * W * 0.6 - g["antenna"] * 0.8, 0.025, g["antenna"],
                          dark, angle=side * 0.4))
    elytra_stripe = _shift(g["body"], g["stripe_dir"], 0.35 * strength)
    parts.append(Part(0, 0.1 * L, W, L, g["body"], power=g["power"], stripes=g["stripes0"] + 1.5 * stripes,
                      stripe_colour=elytra_stripe))
    pron_y = -L * 0.85 - g["pronotum"] * W * 0.3
    parts.append(Part(0, pron_y, W * 0.75, g["pronotum"] * W * 0.7, g["pron"], power=2.4))
    parts.append(Part(0, pron_y, W * 0.28, g["pronotum"] * W * 0.35,
                      _shift(g["pron"], g["patch_dir"], 0.45 * strength * _level(patch))))
    parts.append(Part(0, pron_y - g["pronotum"] * W * 0.65, g["head"], g["head"] * 0.8, dark))
    n = g["spots0"] + spots
    spot_colour = _mix(g["body"], g["spot"], strength)
    for i in range(n):
        y = 0.1 * L + (i + 0.5) / n * 1.4 * L - 0.7 * L
        for side in (-1, 1):
            parts.append(Part(side * W * 0.45, y, g["spot_r"], g["spot_r"], spot_colour))
    parts.append(Part(0, 0.1 * L, 0.015, L * 0.98, dark, power=2))  # the elytral suture
    return parts


def _soil_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    base = np.asarray(_hsv(rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)), np.float32)
    img = base + 0.15 * _smooth_noise(rng, (h, w), 5) + 0.06 * _smooth_noise(rng, (h, w), 17)
    leaves = [Part(*rng.uniform(-1, 1, 2), *rng.uniform(0.08, 0.35, 2),
                   _hsv(rng.uniform(0.0, 0.4), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.75)),
                   angle=rng.uniform(0, np.pi), object=False)
              for _ in range(int(rng.integers(2, 2 + round(8 * nuisance) + 1)))]
    _paint(img, leaves, _canvas_map(w))
    return img


# ---- CUB: perching birds seen from the side, among branches and foliage


def _bird_genus(rng: np.random.Generator) -> dict:
    hue = rng.uniform()
    return {
        "body_rx": rng.uniform(0.42, 0.55), "body_ry": rng.uniform(0.26, 0.34),
        "head_r": rng.uniform(0.16, 0.22), "tail_len": rng.uniform(0.3, 0.5),
        "tail_angle": rng.uniform(-0.5, 0.1), "beak": rng.uniform(0.08, 0.2),
        "body": _hsv(hue, rng.uniform(0.3, 0.8), rng.uniform(0.35, 0.8)),
        "wing": _hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6)),
        "belly": _hsv(hue + rng.uniform(-0.2, 0.2), rng.uniform(0.1, 0.4), rng.uniform(0.7, 0.95)),
        "beak_c": _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.9)),
        "crown_dir": _unit(rng), "bars0": rng.uniform(1.5, 3.0),
        "bar_c": _hsv(hue, 0.1, rng.uniform(0.85, 1.0)),
        "mark_dir": _unit(rng),
    }


def _bird_parts(g: dict, code: tuple[int, int, int], strength: float) -> list[Part]:
    crown, bars, mark = code
    rx, ry, hr = g["body_rx"], g["body_ry"], g["head_r"]
    hx, hy = rx * 0.85, -ry * 0.9
    tail_x = -rx - g["tail_len"] * 0.6
    return [
        Part(-0.05, ry + 0.18, 0.02, 0.16, (0.25, 0.2, 0.15)),  # legs
        Part(0.1, ry + 0.18, 0.02, 0.16, (0.25, 0.2, 0.15)),
        Part(tail_x, 0.05, g["tail_len"], 0.08, g["wing"], angle=g["tail_angle"]),
        Part(0, 0, rx, ry, g["body"]),
        Part(0.08, ry * 0.3, rx * 0.75, ry * 0.6, g["belly"]),
        Part(0.12, ry * 0.45, 0.07, 0.06, _shift(g["belly"], g["mark_dir"], 0.5 * strength * _level(mark))),
        Part(-0.12, -0.02, rx * 0.7, ry * 0.55, g["wing"], angle=-0.15, stripes=g["bars0"] + 1.5 * bars,
             stripe_colour=_mix(g["wing"], g["bar_c"], strength)),
        Part(hx + hr + g["beak"] * 0.6, hy + 0.03, g["beak"], 0.04, g["beak_c"]),
        Part(hx, hy, hr, hr, g["body"]),
        Part(hx - 0.02, hy - hr * 0.55, hr * 0.7, hr * 0.4,
             _shift(g["body"], g["crown_dir"], 0.45 * strength * _level(crown))),
        Part(hx + hr * 0.4, hy - hr * 0.1, 0.04, 0.04, (0.03, 0.03, 0.03)),
    ]


def _foliage_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    _, y = _grid(w, h)
    sky = np.asarray(_hsv(rng.uniform(0.5, 0.62), rng.uniform(0.1, 0.5), rng.uniform(0.7, 1.0)), np.float32)
    green = np.asarray(_hsv(rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.6)), np.float32)
    t = np.clip((y[..., None] + 1) / 2 + 0.2 * _smooth_noise(rng, (h, w), 4, 1), 0, 1)
    img = sky * (1 - t) + green * t
    clutter = []
    for _ in range(int(rng.integers(1, 1 + round(3 * nuisance) + 1))):  # branches
        clutter.append(Part(*rng.uniform(-1, 1, 2), rng.uniform(0.6, 1.5), rng.uniform(0.02, 0.05),
                            _hsv(rng.uniform(0.05, 0.1), 0.5, rng.uniform(0.15, 0.4)),
                            angle=rng.uniform(-0.6, 0.6), object=False))
    for _ in range(int(rng.integers(1, 1 + round(8 * nuisance) + 1))):  # leaves
        clutter.append(Part(*rng.uniform(-1, 1, 2), rng.uniform(0.06, 0.15), rng.uniform(0.03, 0.07),
                            _hsv(rng.uniform(0.18, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.7)),
                            angle=rng.uniform(0, np.pi), object=False))
    _paint(img, clutter, _canvas_map(w))
    return img


# ---- Cars: side views on a street


def _car_genus(rng: np.random.Generator) -> dict:
    return {
        "length": rng.uniform(0.82, 0.95), "height": rng.uniform(0.15, 0.22), "power": rng.uniform(3.5, 6.0),
        "cabin_x": rng.uniform(-0.2, 0.05), "cabin_rx": rng.uniform(0.4, 0.58),
        "cabin_ry": rng.uniform(0.13, 0.2), "cabin_power": rng.uniform(2.2, 4.0),
        "wheel_r": rng.uniform(0.13, 0.17), "wheel_x": rng.uniform(0.52, 0.66),
        "paint": _hsv(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.95)),
        "glass": _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.45)),
        "pillars0": rng.uniform(1.5, 2.2), "lamp": _hsv(rng.uniform(0.08, 0.17), rng.uniform(0.1, 0.6), 0.95),
        "lamp_dir": _unit(rng), "decal": _hsv(rng.uniform(), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)),
    }


def _car_parts(g: dict, code: tuple[int, int, int], strength: float) -> list[Part]:
    pillars, lamp, decal = code
    L, H = g["length"], g["height"]
    top = -H * 0.8
    decal_colour = _mix(g["paint"], g["decal"], strength * decal)
    parts = [
        Part(g["cabin_x"], top, g["cabin_rx"], g["cabin_ry"], g["paint"], power=g["cabin_power"]),
        Part(g["cabin_x"], top - g["cabin_ry"] * 0.25, g["cabin_rx"] * 0.85, g["cabin_ry"] * 0.6, g["glass"],
             power=g["cabin_power"], stripes=g["pillars0"] + pillars,
             stripe_colour=_mix(g["glass"], g["paint"], strength)),
        Part(0, 0, L, H, g["paint"], power=g["power"]),
        Part(0, H * 0.1, L * 0.9, 0.025, decal_colour, power=6),
        Part(L * 0.93, -H * 0.35, 0.06, 0.04,
             _shift(g["lamp"], g["lamp_dir"], 0.6 * strength * _level(lamp))),
        Part(-L * 0.95, -H * 0.35, 0.04, 0.04, (0.7, 0.08, 0.05)),
    ]
    for side in (-1, 1):
        wx = side * g["wheel_x"] * L
        parts += [Part(wx, H * 0.8, g["wheel_r"], g["wheel_r"], (0.06, 0.06, 0.06)),
                  Part(wx, H * 0.8, g["wheel_r"] * 0.5, g["wheel_r"] * 0.5, (0.65, 0.65, 0.68))]
    return parts


def _street_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    _, y = _grid(w, h)
    horizon = rng.uniform(0.0, 0.5)
    wall = np.asarray(_hsv(rng.uniform(), rng.uniform(0.0, 0.4), rng.uniform(0.4, 0.9)), np.float32)
    road = np.asarray(_hsv(rng.uniform(), 0.05, rng.uniform(0.25, 0.5)), np.float32)
    img = np.where((y > horizon)[..., None], road, wall) + 0.05 * _smooth_noise(rng, (h, w), 9)
    clutter = [Part(rng.uniform(-1, 1), horizon - rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.2),
                    rng.uniform(0.05, 0.25), _hsv(rng.uniform(), rng.uniform(0, 0.5), rng.uniform(0.1, 0.9)),
                    power=8, object=False)
               for _ in range(int(rng.integers(0, 1 + round(6 * nuisance))))]  # windows, signs
    kerb = Part(0, horizon + rng.uniform(0.3, 0.6), 2.0, 0.01, (0.9, 0.9, 0.85), power=8, object=False)
    clutter.append(kerb)
    img = img.astype(np.float32)
    _paint(img, clutter, _canvas_map(w))
    return img


# ---- Aircraft: seen from below/above against the sky, any heading


def _aircraft_genus(rng: np.random.Generator) -> dict:
    grey = rng.uniform(0.7, 0.95)
    return {
        "length": rng.uniform(0.8, 0.95), "width": rng.uniform(0.07, 0.1), "wing_y": rng.uniform(-0.15, 0.1),
        "span": rng.uniform(0.38, 0.48), "chord": rng.uniform(0.07, 0.12), "sweep": rng.uniform(0.0, 0.6),
        "tail_span": rng.uniform(0.14, 0.22), "engines0": int(rng.integers(0, 2)),
        "body": _hsv(rng.uniform(), rng.uniform(0.0, 0.15), grey),
        "accent": _hsv(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.8)),
        "tail_dir": _unit(rng), "bands0": rng.uniform(2.0, 3.5), "band_c": _hsv(rng.uniform(), 0.6, 0.4),
        "tip_dir": _unit(rng),
    }


def _aircraft_parts(g: dict, code: tuple[int, int, int], strength: float) -> list[Part]:
    tail, bands, tips = code
    L, W, wy, span = g["length"], g["width"], g["wing_y"], g["span"]
    tail_colour = _shift(g["accent"], g["tail_dir"], 0.5 * strength * _level(tail))
    tip_colour = _shift(g["accent"], g["tip_dir"], 0.5 * strength * _level(tips))
    band_colour = _mix(g["body"], g["band_c"], strength)
    parts = []
    for side in (-1, 1):
        cx, cy = side * span * math.cos(g["sweep"]) * 0.9, wy + span * math.sin(g["sweep"]) * 0.9
        parts.append(Part(cx, cy, span, g["chord"], g["body"], angle=side * g["sweep"]))
        parts.append(Part(cx * 1.9, cy + (cy - wy) * 0.95, 0.05, 0.05, tip_colour))
        for k in range(g["engines0"] + 1):
            ex = side * span * (0.35 + 0.4 * k)
            ey = wy + abs(ex) * math.tan(g["sweep"]) * 0.9 + 0.02
            parts.append(Part(ex, ey, 0.03, 0.08, (0.35, 0.35, 0.4)))
        parts.append(Part(side * g["tail_span"] * 0.8, L * 0.85, g["tail_span"], 0.045, tail_colour,
                          angle=side * 0.3))
    parts.append(Part(0, 0, L, W, g["body"], stripes=g["bands0"] + 2 * bands, stripe_colour=band_colour,
                      angle=math.pi / 2))
    parts.append(Part(0, -L * 0.85, W * 0.6, 0.06, (0.15, 0.18, 0.25)))  # cockpit
    return parts


def _sky_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    _, y = _grid(w, h)
    top = np.asarray(_hsv(rng.uniform(0.55, 0.63), rng.uniform(0.3, 0.8), rng.uniform(0.6, 1.0)), np.float32)
    bottom = np.asarray(_hsv(rng.uniform(0.5, 0.6), rng.uniform(0.05, 0.3), rng.uniform(0.75, 1.0)),
                        np.float32)
    t = ((y + 1) / 2)[..., None]
    img = top * (1 - t) + bottom * t
    clouds = np.clip(_smooth_noise(rng, (h, w), 6, 1) * 1.5 - 0.3 + 0.3 * nuisance, 0, 1) * min(nuisance, 1.0)
    return img * (1 - clouds) + clouds * 0.95


def _banner(rng: np.random.Generator, width: int) -> np.ndarray:
    """A copyright strip like FGVC-Aircraft's: dark band with light 'text', unrelated to the class."""
    strip = np.full((BANNER_HEIGHT, width, 3), rng.uniform(0.0, 0.15), np.float32)
    chars = rng.random(width // 3) < 0.6
    text = np.repeat(chars, 3)[:width]
    rows = slice(BANNER_HEIGHT // 2 - 3, BANNER_HEIGHT // 2 + 3)
    strip[rows, : text.size] = np.where(text[None, :, None], 0.9, strip[rows, : text.size])
    return strip


# ---- Flowers: rosettes seen from above on dark foliage


def _flower_genus(rng: np.random.Generator) -> dict:
    hue = rng.choice([rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.17)])
    return {
        "petals": int(rng.integers(4, 9)), "base": rng.uniform(0.1, 0.45), "power": rng.uniform(0.5, 2.0),
        "radius": rng.uniform(0.8, 0.95), "centre_r": rng.uniform(0.14, 0.22),
        "petal": _hsv(hue, rng.uniform(0.4, 0.95), rng.uniform(0.6, 1.0)),
        "inner": _hsv(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.9)),
        "centre": _hsv(rng.uniform(0.1, 0.17), rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.9)),
        "centre_dir": _unit(rng), "rings0": rng.uniform(1.5, 2.5), "ring_dir": _unit(rng),
        "halo_dir": _unit(rng),
    }


def _flower_parts(g: dict, code: tuple[int, int, int], strength: float) -> list[Part]:
    centre, rings, halo = code
    ring_colour = _shift(g["petal"], g["ring_dir"], 0.25 * min(strength, 1.5))
    return [
        Part(0, 0, g["radius"], g["radius"], g["petal"], petals=g["petals"], base=g["base"], power=g["power"],
             stripes=g["rings0"] + 1.0 * rings, stripe_colour=ring_colour, stripe_radial=True),
        Part(0, 0, g["radius"] * 0.5, g["radius"] * 0.5, g["inner"], petals=g["petals"], base=0.5, power=1.0,
             angle=math.pi / g["petals"]),
        Part(0, 0, g["centre_r"] * 1.45, g["centre_r"] * 1.45,
             _shift(g["inner"], g["halo_dir"], 0.25 * strength * _level(halo))),
        Part(0, 0, g["centre_r"], g["centre_r"],
             _shift(g["centre"], g["centre_dir"], 0.25 * strength * _level(centre))),
    ]


def _leaf_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    base = np.asarray(_hsv(rng.uniform(0.22, 0.42), rng.uniform(0.4, 0.9), rng.uniform(0.08, 0.3)),
                      np.float32)
    img = base + 0.08 * _smooth_noise(rng, (h, w), 6)
    leaves = [Part(*rng.uniform(-1, 1, 2), rng.uniform(0.2, 0.5), rng.uniform(0.06, 0.15),
                   _hsv(rng.uniform(0.2, 0.42), rng.uniform(0.4, 0.9), rng.uniform(0.15, 0.5)),
                   angle=rng.uniform(0, np.pi), object=False)
              for _ in range(int(rng.integers(1, 1 + round(7 * nuisance) + 1)))]
    _paint(img, leaves, _canvas_map(w))
    return img


DOMAINS = {
    d.name: d for d in (
        Domain("inat", _insect_genus, _insect_parts, _soil_background, math.pi, False, (0.5, 0.72)),
        Domain("cub", _bird_genus, _bird_parts, _foliage_background, 0.35, True, (0.6, 0.8)),
        Domain("cars", _car_genus, _car_parts, _street_background, 0.08, True, (0.78, 0.95)),
        Domain("aircraft", _aircraft_genus, _aircraft_parts, _sky_background, math.pi, False, (0.7, 0.9)),
        Domain("flowers", _flower_genus, _flower_parts, _leaf_background, math.pi, False, (0.55, 0.85)),
    )
}


def make_genus(seed: int, domain: str, genus: int, n_species: int) -> Genus:
    """A genus drawn from its own key, so adding genera or species leaves the others unchanged."""
    params = DOMAINS[domain].make_genus(_rng(seed, domain, "genus", genus))
    return Genus(params, _species_codes(_rng(seed, domain, "codes", genus, n_species), n_species))


# --------------------------------------------------------------------------------------------------
# One image


def render(domain: str, genus: Genus, species: int, rng: np.random.Generator, size: int,
           strength: float = 1.0, nuisance: float = 1.0) -> tuple[np.ndarray, Box]:
    """Draw one image (uint8 HxWx3) and the object's box (x, y, w, h) in pixels.

    The nuisances are drawn here, per image: background and clutter, pose (rotation, flip, scale,
    position), per-part colour variation, lighting (gain, colour cast, gradient) and sensor noise.
    """
    d = DOMAINS[domain]
    parts = d.make_parts(genus.params, genus.codes[species], strength)
    img = d.background(rng, size, size, nuisance).astype(np.float32)
    angle = rng.uniform(-1, 1) * d.rotation * min(nuisance, 1.0)
    lo, hi = d.scale
    scale = hi - (hi - lo) * rng.uniform() * min(nuisance, 1.0)
    shift = rng.uniform(-1, 1, 2) * max(0.0, 1.0 - scale) * 0.8 * min(nuisance, 1.0)
    flip = -1.0 if d.flip and rng.random() < 0.5 else 1.0
    c, s = math.cos(angle), math.sin(angle)
    turn = np.array([[flip * c, flip * s], [-s, c]]) / scale  # canvas offset -> object coordinates
    canvas = _canvas_map(size)
    to_object = np.hstack([turn @ canvas[:, :2], (turn @ (canvas[:, 2] - shift))[:, None]])
    jitter = rng.normal(0, 0.035 * nuisance, (len(parts), 3)).astype(np.float32)
    cover = _paint(img, parts, to_object, jitter)
    img = _light(img, rng, nuisance)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), _box(cover)


def _light(img: np.ndarray, rng: np.random.Generator, nuisance: float) -> np.ndarray:
    """Global lighting and sensor noise: what a camera changes without changing the species."""
    h, w = img.shape[:2]
    gain = 1 + nuisance * rng.uniform(-0.3, 0.2)
    cast = 1 + nuisance * rng.uniform(-0.08, 0.08, 3)
    x, y = _grid(w, h)
    gx, gy = rng.uniform(-0.15, 0.15, 2) * nuisance
    img = img * (gain * cast) * (1 + gx * x + gy * y)[..., None]
    return img + rng.normal(0, rng.uniform(0.005, 0.04) * nuisance, img.shape).astype(np.float32)


def _box(cover: np.ndarray) -> Box:
    ys, xs = np.nonzero(cover > 0.5)
    if xs.size == 0:
        return (0.0, 0.0, float(cover.shape[1]), float(cover.shape[0]))
    return (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))


def _save_jpeg(path: Path, pixels: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=quality)


def _image_rng(seed: int, domain: str, cls: int, split: str, index: int) -> np.random.Generator:
    return _rng(seed, domain, cls, SPLIT_IDS[split], index)


# --------------------------------------------------------------------------------------------------
# Geography and season (iNat domain only; the real multi-domain formats carry no metadata)


@dataclass
class Range:
    """Where and when a species is seen: blobs (lat, lon, sigma in degrees, weight) and a season."""

    blobs: list[tuple[float, float, float, float]]
    peak: float  # fraction of the year of the activity peak
    spread: float  # standard deviation in fractions of the year (wrapped around the year)


def _habitats(seed: int, count: int, min_sep_deg: float = 40.0) -> list[tuple[float, float]]:
    """Centres shared by all genera, drawn one by one (each from its own key, rejecting close ones)."""
    centres: list[np.ndarray] = []
    out = []
    for k in range(count):
        rng = _rng(seed, "inat", "habitat", k)
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
    pool = _habitats(seed, n_h + 1)
    ranges = []
    for g in range(genera):
        rng = _rng(seed, "inat", "range", g, species_per_genus)
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
    weights = np.array([b[3] for b in r.blobs])
    lat, lon, sigma, _ = r.blobs[int(rng.choice(len(r.blobs), p=weights / weights.sum()))]
    c = _unit_vector(lat, lon)
    e1 = np.cross([0.0, 0.0, 1.0], c)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    step = np.radians(sigma) * rng.normal(size=2)
    p = c + step[0] * e1 + step[1] * e2
    p /= np.linalg.norm(p)
    return math.degrees(math.asin(p[2])), math.degrees(math.atan2(p[1], p[0]))


def sample_date(rng: np.random.Generator, r: Range, first_year: int, last_year: int) -> dt.datetime:
    """A date in a random year: day of year from a wrapped normal around the peak (leap years counted)."""
    year = int(rng.integers(first_year, last_year + 1))
    days = 366 if calendar.isleap(year) else 365
    frac = (r.peak + rng.normal(0, r.spread)) % 1.0
    day = min(int(frac * days), days - 1)
    start = dt.datetime(year, 1, 1, int(rng.integers(6, 20)), int(rng.integers(0, 60)))
    return start + dt.timedelta(days=day)


# --------------------------------------------------------------------------------------------------
# Names: pseudo-Latin taxonomy, stable per key

_SYLLABLES = ["ar", "bel", "cor", "dra", "el", "fen", "gal", "hy", "is", "ka", "lum", "mor", "nax", "or",
              "pel", "quor", "ri", "sol", "tar", "ul", "ver", "xan", "yr", "zo", "bra", "cli", "dul", "phy"]
_EPITHETS = [("maculata", "Spotted"), ("striata", "Striped"), ("rubra", "Red"), ("minor", "Lesser"),
             ("major", "Greater"), ("borealis", "Northern"), ("australis", "Southern"),
             ("vernalis", "Spring"), ("autumnalis", "Autumn"), ("montana", "Mountain"),
             ("sylvatica", "Woodland"), ("palustris", "Marsh"), ("ornata", "Ornate"), ("pallida", "Pale"),
             ("nigra", "Black"), ("alba", "White"), ("fasciata", "Banded"), ("punctata", "Dotted"),
             ("lineata", "Lined"), ("virens", "Green")]


def _word(rng: np.random.Generator, syllables: int, suffix: str = "") -> str:
    return ("".join(rng.choice(_SYLLABLES, syllables)) + suffix).capitalize()


def _unique_words(seed: int, domain: str, what: str, count: int, syllables: int,
                  suffix: str = "") -> list[str]:
    """Distinct words, the k-th depending only on keys <= k (prefix-stable when counts grow)."""
    out: list[str] = []
    for k in range(count):
        rng = _rng(seed, domain, what, k)
        word = _word(rng, syllables, suffix)
        while word in out:
            word = _word(rng, syllables, suffix)
        out.append(word)
    return out


def _epithets(seed: int, domain: str, genus: int, n: int) -> list[tuple[str, str]]:
    """Distinct (Latin epithet, English adjective) pairs for the species of one genus."""
    order = _rng(seed, domain, "epithets", genus).permutation(len(_EPITHETS))
    return [(_EPITHETS[order[j % len(order)]][0] + ("" if j < len(order) else str(j // len(order))),
             _EPITHETS[order[j % len(order)]][1] + ("" if j < len(order) else f" {j // len(order) + 1}"))
            for j in range(n)]


# --------------------------------------------------------------------------------------------------
# iNaturalist 2021


_LICENSES = [
    {"id": 0, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
    {"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
    {"id": 2, "name": "CC BY-NC 4.0", "url": "https://creativecommons.org/licenses/by-nc/4.0/"},
]
_HOLDERS = ["A. Observer", "B. Naturalist", "C. Fieldworker", "D. Hiker", "E. Birder", "F. Botanist"]


def inat_categories(opts: SynthOptions) -> list[dict]:
    """iNat-2021 categories with a full pseudo-taxonomy; ids are genus-major, 0-based."""
    genus_names = _unique_words(opts.seed, "inat", "genus-name", opts.genera, 2, "us")
    families = _unique_words(opts.seed, "inat", "family", (opts.genera + 1) // 2, 2, "idae")
    orders = _unique_words(opts.seed, "inat", "order", (opts.genera + 3) // 4, 2, "ptera")
    cats = []
    for g in range(opts.genera):
        for epithet, adjective in _epithets(opts.seed, "inat", g, opts.species_per_genus):
            cid = len(cats)
            taxa = {"kingdom": "Animalia", "phylum": "Arthropoda", "class": "Insecta",
                    "order": orders[g // 4], "family": families[g // 2], "genus": genus_names[g]}
            cats.append({
                "id": cid, "name": f"{genus_names[g]} {epithet}",
                "common_name": f"{adjective} {genus_names[g]} Beetle",
                "supercategory": "Insects", **taxa, "specific_epithet": epithet,
                "image_dir_name": f"{cid:05d}_" + "_".join([*taxa.values(), epithet]),
            })
    return cats


def _inat_image(opts: SynthOptions, genera: list[Genus], ranges: list[Range], cat: dict, split: str,
                index: int, image_id: int, out_dir: Path) -> dict:
    """Render, save and describe one iNat image; the metadata comes from the class' range."""
    g, j = divmod(cat["id"], opts.species_per_genus)
    key = _seed(opts.seed, "inat", cat["id"], SPLIT_IDS[split], index)
    pixel_rng, meta_rng = (np.random.default_rng(s) for s in key.spawn(2))
    pixels, _ = render("inat", genera[g], j, pixel_rng, opts.size, opts.detail_strength, opts.nuisance)
    name = uuid.UUID(bytes=meta_rng.bytes(16), version=4)
    file_name = f"{split}/{cat['image_dir_name']}/{name}.jpg"
    _save_jpeg(out_dir / file_name, pixels, opts.jpeg_quality)
    lat, lon = sample_location(meta_rng, ranges[cat["id"]])
    when = sample_date(meta_rng, ranges[cat["id"]], opts.first_year, opts.last_year)
    uncertainty = int(np.exp(meta_rng.uniform(np.log(5), np.log(5000))))
    missing = meta_rng.integers(3) if meta_rng.random() < opts.missing_metadata_fraction else None
    no_place, no_date = missing in (0, 2), missing in (1, 2)
    return {
        "id": image_id, "width": opts.size, "height": opts.size, "file_name": file_name,
        "license": int(meta_rng.integers(len(_LICENSES))),
        "rights_holder": _HOLDERS[int(meta_rng.integers(len(_HOLDERS)))],
        "date": None if no_date else when.strftime("%Y-%m-%d %H:%M:%S+00:00"),
        "latitude": None if no_place else round(lat, 5), "longitude": None if no_place else round(lon, 5),
        "location_uncertainty": None if no_place else uncertainty,
    }


def _coco(images: list[dict], labels: list[int], categories: list[dict], split: str) -> dict:
    return {
        "info": {"year": 2021, "version": "2021",
                 "description": f"fgvc synthetic benchmark, iNat-2021 layout ({split})",
                 "contributor": "fgvc.data.synthetic", "url": "", "date_created": "2021-01-01 00:00:00"},
        "licenses": _LICENSES,
        "images": images,
        "annotations": [{"id": im["id"], "image_id": im["id"], "category_id": c}
                        for im, c in zip(images, labels, strict=True)],
        "categories": categories,
    }


def write_inat(out_dir: str | os.PathLike, opts: SynthOptions | None = None) -> dict:
    """Write the single-domain benchmark in the iNaturalist-2021 layout; return counts.

    ``train_mini.json`` lists the first ``train_mini_per_class`` train images of each class (the
    same files as train, as the real mini is a per-class subset of train).
    """
    opts = opts or SynthOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cats = inat_categories(opts)
    genera = [make_genus(opts.seed, "inat", g, opts.species_per_genus) for g in range(opts.genera)]
    ranges = species_ranges(opts.seed, opts.genera, opts.species_per_genus)
    files: dict[str, tuple[list[dict], list[int]]] = {s: ([], []) for s in ("train", "train_mini", "val")}
    next_id = 0
    for split, per_class in (("train", opts.train_per_class), ("val", opts.val_per_class)):
        for cat in cats:
            for i in range(per_class):
                image = _inat_image(opts, genera, ranges, cat, split, i, next_id, out)
                next_id += 1
                files[split][0].append(image)
                files[split][1].append(cat["id"])
                if split == "train" and i < opts.train_mini_per_class:
                    files["train_mini"][0].append(image)
                    files["train_mini"][1].append(cat["id"])
    for name, (images, labels) in files.items():
        _write_json(out / f"{name}.json", _coco(images, labels, cats, name))
    all_images = files["train"][0] + files["val"][0]
    return {
        "format": "inat2021", "classes": len(cats), "genera": opts.genera,
        **{name: len(images) for name, (images, _) in files.items()},
        "missing_location": sum(im["latitude"] is None for im in all_images),
        "missing_date": sum(im["date"] is None for im in all_images),
    }


def _write_json(path: Path, obj: dict) -> None:
    """Compact, key-order-stable JSON written atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------
# Multi-domain: one function per real format


@dataclass
class _DomainImage:
    cls: int  # 0-based class
    index: int  # index within the class
    split: str  # train / val / test
    pixels: np.ndarray
    box: Box


def _domain_images(opts: SynthOptions, domain: str, banner: bool = False) -> list[_DomainImage]:
    """All images of a domain, class-major; each class' last shares go to test (and val)."""
    n = opts.domain_images_per_class
    n_test = max(1, round(n * opts.domain_test_fraction))
    genera = [make_genus(opts.seed, domain, g, opts.domain_species_per_genus)
              for g in range(opts.domain_genera)]
    out = []
    for cls in range(opts.domain_genera * opts.domain_species_per_genus):
        g, j = divmod(cls, opts.domain_species_per_genus)
        for i in range(n):
            split = "test" if i >= n - n_test else ("val" if i >= n - 2 * n_test else "train")
            rng = _image_rng(opts.seed, domain, cls, "train", i)  # the split is a view, not part of the key
            pixels, box = render(domain, genera[g], j, rng, opts.size, opts.detail_strength, opts.nuisance)
            if banner:
                pixels = np.concatenate([pixels, (_banner(rng, opts.size) * 255).astype(np.uint8)], axis=0)
            out.append(_DomainImage(cls, i, split, pixels, box))
    return out


def _domain_class_names(opts: SynthOptions, domain: str, suffix: str) -> list[tuple[str, str, str]]:
    """(genus word, English adjective, Latin epithet) per class, genus-major."""
    words = _unique_words(opts.seed, domain, "genus-name", opts.domain_genera, 2, suffix)
    return [(words[g], adj, latin) for g in range(opts.domain_genera)
            for latin, adj in _epithets(opts.seed, domain, g, opts.domain_species_per_genus)]


def _split_counts(images: list[_DomainImage]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for im in images:
        counts[im.split] = counts.get(im.split, 0) + 1
    return counts


def write_cub(out_dir: Path, opts: SynthOptions) -> dict:
    """CUB-200-2011: ``CUB_200_2011/`` with images/<NNN.Name>/ and the five id-keyed text files.

    CUB has no validation split: val-share images are training images (1 in train_test_split.txt).
    """
    root = out_dir / "CUB_200_2011"
    names = [f"{i + 1:03d}.{adj.replace(' ', '_')}_{word}"
             for i, (word, adj, _) in enumerate(_domain_class_names(opts, "cub", "wren"))]
    images = _domain_images(opts, "cub")
    rows = {k: [] for k in ("images", "labels", "split", "boxes")}
    for image_id, im in enumerate(images, start=1):
        rel = f"{names[im.cls]}/{names[im.cls][4:]}_{im.index + 1:04d}_{image_id}.jpg"
        _save_jpeg(root / "images" / rel, im.pixels, opts.jpeg_quality)
        rows["images"].append(f"{image_id} {rel}")
        rows["labels"].append(f"{image_id} {im.cls + 1}")
        rows["split"].append(f"{image_id} {0 if im.split == 'test' else 1}")
        rows["boxes"].append(f"{image_id} " + " ".join(f"{v:.1f}" for v in im.box))
    _write_lines(root / "images.txt", rows["images"])
    _write_lines(root / "image_class_labels.txt", rows["labels"])
    _write_lines(root / "train_test_split.txt", rows["split"])
    _write_lines(root / "bounding_boxes.txt", rows["boxes"])
    _write_lines(root / "classes.txt", [f"{i + 1} {n}" for i, n in enumerate(names)])
    counts = _split_counts(images)
    return {"format": "cub", "root": "cub/CUB_200_2011", "classes": len(names),
            "train": counts.get("train", 0) + counts.get("val", 0), "test": counts.get("test", 0)}


def _savemat(path: Path, arrays: dict) -> None:
    """``scipy.io.savemat`` with a fixed header: scipy stamps the creation time into the first 116
    bytes, which would make two identical benchmarks differ byte for byte."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, arrays)
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: fgvc.data.synthetic".ljust(116, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def _uint_dtype(largest: int) -> type:
    """The smallest unsigned type, as MATLAB stored the official files (uint8 labels, uint16 ids)."""
    return np.uint8 if largest < 2**8 else np.uint16 if largest < 2**16 else np.uint32


def _cars_annotations(images: list[_DomainImage], with_class: bool) -> np.ndarray:
    """A 1xN struct array exactly as the devkit's: scalar fields as 1x1 arrays, fname a string."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_class else []) + ["fname"]
    arr = np.zeros((1, len(images)), dtype=[(f, "O") for f in fields])
    for k, im in enumerate(images):
        x, y, w, h = im.box
        values = [int(x) + 1, int(y) + 1, int(x + w), int(y + h)] + ([im.cls + 1] if with_class else [])
        for f, v in zip(fields, values, strict=False):  # fname is set below
            arr[0, k][f] = np.array([[v]], dtype=_uint_dtype(v))
        arr[0, k]["fname"] = f"{k + 1:05d}.jpg"
    return arr


def write_cars(out_dir: Path, opts: SynthOptions) -> dict:
    """Stanford Cars: devkit/*.mat (class_names, annotations struct arrays), cars_train/, cars_test/."""
    names = [f"{word} {latin.capitalize()} {('Sedan', 'Coupe', 'Hatchback')[j % 3]} {2008 + 2 * j}"
             for j, (word, adj, latin) in enumerate(_domain_class_names(opts, "cars", "o"))]
    images = _domain_images(opts, "cars")
    train = [im for im in images if im.split != "test"]
    test = [im for im in images if im.split == "test"]
    for folder, subset in (("cars_train", train), ("cars_test", test)):
        for k, im in enumerate(subset):
            _save_jpeg(out_dir / folder / f"{k + 1:05d}.jpg", im.pixels, opts.jpeg_quality)
    devkit = out_dir / "devkit"
    devkit.mkdir(parents=True, exist_ok=True)
    class_names = np.empty((1, len(names)), dtype=object)
    class_names[0, :] = names
    _savemat(devkit / "cars_meta.mat", {"class_names": class_names})
    _savemat(devkit / "cars_train_annos.mat", {"annotations": _cars_annotations(train, True)})
    _savemat(devkit / "cars_test_annos.mat", {"annotations": _cars_annotations(test, False)})
    _savemat(out_dir / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(test, True)})
    _savemat(devkit / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(test, True)})
    return {"format": "cars", "root": "cars", "classes": len(names), "train": len(train), "test": len(test)}


def write_aircraft(out_dir: Path, opts: SynthOptions) -> dict:
    """FGVC-Aircraft 2013b: images/<7-digit id>.jpg with a 20-pixel banner, and the three label levels."""
    data = out_dir / "fgvc-aircraft-2013b" / "data"
    makers = _unique_words(opts.seed, "aircraft", "maker", (opts.domain_genera + 1) // 2, 2)
    makers = [f"{m} Aero" if k % 2 else m for k, m in enumerate(makers)]  # some names contain spaces
    family = [f"{makers[g // 2]} {100 * (g + 1) + 20 * (g % 3)}" for g in range(opts.domain_genera)]
    variant, fam_of, maker_of = [], [], []
    for g in range(opts.domain_genera):
        for j in range(opts.domain_species_per_genus):
            variant.append(f"{family[g]}-{10 * (j + 1)}")
            fam_of.append(family[g])
            maker_of.append(makers[g // 2])
    images = _domain_images(opts, "aircraft", banner=True)
    per_split: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    boxes = []
    for k, im in enumerate(images):
        image_id = f"{1_000_000 + 37 * k:07d}"
        _save_jpeg(data / "images" / f"{image_id}.jpg", im.pixels, opts.jpeg_quality)
        per_split[im.split].append((image_id, im.cls))
        x, y, w, h = im.box
        boxes.append(f"{image_id} {int(x) + 1} {int(y) + 1} {int(x + w)} {int(y + h)}")
    per_split["trainval"] = sorted(per_split["train"] + per_split["val"])
    levels = (("variant", "variants.txt", variant, variant), ("family", "families.txt", fam_of, family),
              ("manufacturer", "manufacturers.txt", maker_of, makers))
    for level, listing_file, names, listing in levels:
        _write_lines(data / listing_file, list(dict.fromkeys(listing)))
        for split, rows in per_split.items():
            _write_lines(data / f"images_{level}_{split}.txt", [f"{i} {names[c]}" for i, c in rows])
    for split, rows in per_split.items():
        _write_lines(data / f"images_{split}.txt", [i for i, _ in rows])
    _write_lines(data / "images_box.txt", boxes)
    return {"format": "aircraft", "root": "aircraft/fgvc-aircraft-2013b", "classes": len(variant),
            **{s: len(r) for s, r in per_split.items()}}


def write_flowers(out_dir: Path, opts: SynthOptions) -> dict:
    """Flowers-102: jpg/image_NNNNN.jpg, imagelabels.mat (labels) and setid.mat (trnid, valid, tstid)."""
    images = _domain_images(opts, "flowers")
    ids: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for k, im in enumerate(images, start=1):
        _save_jpeg(out_dir / "jpg" / f"image_{k:05d}.jpg", im.pixels, opts.jpeg_quality)
        ids[im.split].append(k)
    labels = np.array([[im.cls + 1 for im in images]])
    labels = labels.astype(_uint_dtype(int(labels.max())))
    _savemat(out_dir / "imagelabels.mat", {"labels": labels})
    setid = {"trnid": ids["train"], "valid": ids["val"], "tstid": ids["test"]}
    dtype = _uint_dtype(len(images))
    _savemat(out_dir / "setid.mat", {k: np.array([v], dtype=dtype) for k, v in setid.items()})
    classes = opts.domain_genera * opts.domain_species_per_genus
    return {"format": "flowers", "root": "flowers", "classes": classes, **{s: len(v) for s, v in ids.items()}}


WRITERS = {"cub": write_cub, "cars": write_cars, "aircraft": write_aircraft, "flowers": write_flowers}


def write_multidomain(out_dir: str | os.PathLike, opts: SynthOptions | None = None) -> dict:
    """Write the chosen domains (``opts.domains``), each in its real format under ``out_dir/<domain>/``."""
    opts = opts or SynthOptions()
    out = Path(out_dir)
    return {"domains": {d: WRITERS[d](out / d, opts) for d in opts.domains}}


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


# --------------------------------------------------------------------------------------------------
# Both, cached


def write_benchmark(out_dir: str | os.PathLike, opts: SynthOptions | None = None) -> dict:
    """Write ``inat/`` and ``multi/`` and the ``synth.json`` summary; a no-op if it already matches.

    ``synth.json`` is written last, so an interrupted run is redone rather than trusted. With
    other options, the folders of the previous benchmark (recognised by its ``synth.json``) are
    replaced.
    """
    opts = opts or SynthOptions()
    out = Path(out_dir)
    summary_path = out / "synth.json"
    options = _options_json(opts)
    if summary_path.is_file():
        try:
            existing = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = None
        if existing and existing.get("version") == FORMAT_VERSION and existing.get("options") == options:
            return existing
        # Ours and stale: forget it first (an interrupted rewrite must not look complete), and drop
        # the old folders so no image or domain of the previous options lingers beside the new ones.
        summary_path.unlink()
        for sub in ("inat", "multi"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"version": FORMAT_VERSION, "options": options,
               "inat": {"root": "inat", **write_inat(out / "inat", opts)},
               "multi": write_multidomain(out / "multi", opts)}
    _write_json(summary_path, summary)
    return summary


def _options_json(opts: SynthOptions) -> dict:
    """The options as they round-trip through JSON (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(opts)))
