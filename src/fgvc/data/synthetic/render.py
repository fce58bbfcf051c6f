"""One image: a species' parts posed on its domain's background, lit, with sensor noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from fgvc.data.synthetic.domains import DOMAINS, Genus, Look
from fgvc.data.synthetic.draw import Box, canvas_map, grid, paint
from fgvc.data.synthetic.mechanisms import badge_parts, mark_parts


def render(domain: str, genus: Genus, look: Look, rng: np.random.Generator, size: int,
           strength: float = 1.0, nuisance: float = 1.0) -> tuple[np.ndarray, Box]:
    """Draw one image (uint8 HxWx3) of a species of ``genus`` showing ``look`` (``genus.look(species)``
    by default) and the object's box (x, y, w, h) in pixels.

    The nuisances are drawn here, per image: background and clutter, pose (rotation, flip, scale,
    position), per-part colour variation, lighting (gain, colour cast, gradient) and sensor noise.
    """
    d = DOMAINS[domain]
    parts = d.make_parts(genus.params, look.code, strength)
    img = d.background(rng, size, size, nuisance).astype(np.float32)
    angle = rng.uniform(-1, 1) * d.rotation * min(nuisance, 1.0)
    lo, hi = d.scale
    scale = hi - (hi - lo) * rng.uniform() * min(nuisance, 1.0)
    shift = rng.uniform(-1, 1, 2) * max(0.0, 1.0 - scale) * 0.8 * min(nuisance, 1.0)
    flip = -1.0 if d.flip and rng.random() < 0.5 else 1.0
    c, s = math.cos(angle), math.sin(angle)
    turn = np.array([[flip * c, flip * s], [-s, c]]) / scale  # canvas offset -> object coordinates
    canvas = canvas_map(size)
    to_object = np.hstack([turn @ canvas[:, :2], (turn @ (canvas[:, 2] - shift))[:, None]])
    if look.badge is not None:
        parts += badge_parts(parts, look.badge, strength)
    if look.mark is not None:  # drawn after the pose, so siblings rendered from one generator share it
        parts += mark_parts(parts, look.mark, genus.levels, rng, strength)
    jitter = rng.normal(0, 0.035 * nuisance, (len(parts), 3)).astype(np.float32)
    cover = paint(img, parts, to_object, jitter)
    img = _light(img, rng, nuisance)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), _box(cover)


def _light(img: np.ndarray, rng: np.random.Generator, nuisance: float) -> np.ndarray:
    """Global lighting and sensor noise: what a camera changes without changing the species."""
    h, w = img.shape[:2]
    gain = 1 + nuisance * rng.uniform(-0.3, 0.2)
    cast = 1 + nuisance * rng.uniform(-0.08, 0.08, 3)
    x, y = grid(w, h)
    gx, gy = rng.uniform(-0.15, 0.15, 2) * nuisance
    img = img * (gain * cast) * (1 + gx * x + gy * y)[..., None]
    return img + rng.normal(0, rng.uniform(0.005, 0.04) * nuisance, img.shape).astype(np.float32)


def _box(cover: np.ndarray) -> Box:
    ys, xs = np.nonzero(cover > 0.5)
    if xs.size == 0:
        return (0.0, 0.0, float(cover.shape[1]), float(cover.shape[0]))
    return (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))


def save_jpeg(path: Path, pixels: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=quality)
