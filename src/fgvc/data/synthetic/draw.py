"""Drawing primitives: soft-edged parts in object coordinates, posed on a canvas, and colour helpers."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]  # a colour, each channel in [0, 1]
Box = tuple[float, float, float, float]  # x, y, width, height in pixels


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


def grid(size: int, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Canvas coordinates of pixel centres: x in [-1, 1] across the width, y with the same scale."""
    height = height or size
    xs = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    ys = (np.arange(height, dtype=np.float32) + 0.5) / size * 2 - 1
    return np.meshgrid(xs, ys)


def canvas_map(size: int) -> np.ndarray:
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


def paint(img: np.ndarray, parts: list[Part], to_object: np.ndarray,
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


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int,
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


def hsv(h: float, s: float, v: float) -> RGB:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def shift(colour: RGB, direction: np.ndarray, amount: float) -> RGB:
    """A colour moved along a unit RGB direction (the species colour steps).

    The start is first pulled into [0.25, 0.75]^3 so that steps of up to 0.25 are never clipped:
    two species' colours can never collapse onto one by saturating at the cube's edge.
    """
    out = np.clip(np.clip(np.asarray(colour), 0.25, 0.75) + amount * direction, 0.0, 1.0)
    return tuple(float(c) for c in out)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """From colour a towards b by t (capped at b): how a detail's contrast follows detail_strength."""
    t = min(t, 1.0)
    return tuple(float(x + t * (y - x)) for x, y in zip(a, b, strict=True))


def rgb_direction(rng: np.random.Generator) -> np.ndarray:
    d = rng.normal(size=3)
    return d / np.linalg.norm(d)

