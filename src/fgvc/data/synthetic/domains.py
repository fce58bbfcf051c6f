"""The visual worlds: how each domain draws a genus, a species' details, its background and its pose.

Species of one genus share a shape and a palette (the genus' ``params``) and differ only on three
detail axes (a patch's colour, a stripe count, a few spots...), each species at its own level.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fgvc.data.synthetic.draw import (Part, canvas_map, grid, hsv, mix, paint, rgb_direction, shift,
                                     smooth_noise)
from fgvc.data.synthetic.seeds import key_rng

BANNER_HEIGHT = 20  # FGVC-Aircraft: the bottom 20 pixel rows are a copyright banner


Code = tuple[int, int, int]  # a species' level on each of the three detail axes of its genus


@dataclass(frozen=True)
class Look:
    """What tells a species apart from its siblings in one image.

    ``code``: the detail levels the domain draws on the object. The benchmark's mechanisms (all off by
    default) move some of that information elsewhere: ``mark``, a code drawn as one small mark at a
    random place on the object (local evidence); ``badge``, the level of a part type every domain
    draws alike (shared cues, transfer target).
    """

    code: Code
    mark: Code | None = None
    badge: int | None = None


@dataclass
class Genus:
    """Shared by the species of a genus: shape and palette (in ``params``) and the detail tables."""

    params: dict
    codes: list[Code]  # per species: its level on each of the three detail axes

    @property
    def levels(self) -> int:
        """How many levels each detail axis has."""
        return code_levels(len(self.codes))

    def look(self, species: int) -> Look:
        """The species as the default benchmark draws it: its own code, on the object."""
        return Look(self.codes[species])


@dataclass(frozen=True)
class Domain:
    """A visual world: how a genus is drawn, how a species' parts follow, the background, the pose."""

    name: str
    make_genus: Callable[[np.random.Generator], dict]
    make_parts: Callable[[dict, Code, float], list[Part]]
    background: Callable[[np.random.Generator, int, int, float], np.ndarray]
    rotation: float  # max |rotation| in radians at nuisance 1
    flip: bool  # random horizontal flips
    scale: tuple[float, float]  # object scale on the canvas


def code_levels(n: int) -> int:
    """Levels per detail axis for n species: the fewest (at least 2) that give each its own code."""
    levels = 2
    while levels**3 < n:
        levels += 1
    return levels


def _species_codes(rng: np.random.Generator, n: int) -> list[Code]:
    """Distinct detail levels for n species on three axes; siblings may differ on a single axis."""
    levels = code_levels(n)
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
        "body": hsv(hue, rng.uniform(0.5, 0.9), rng.uniform(0.45, 0.85)),
        "pron": hsv(hue + rng.uniform(0.15, 0.5), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.8)),
        "dark": hsv(hue, 0.5, rng.uniform(0.08, 0.2)),
        "spot": hsv(hue + 0.5, rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.95)),
        "spot_r": rng.uniform(0.07, 0.1), "spots0": int(rng.integers(1, 3)),
        "patch_dir": rgb_direction(rng), "stripes0": rng.uniform(2.5, 4.0), "stripe_dir": rgb_direction(rng),
    }


def _insect_parts(g: dict, code: Code, strength: float) -> list[Part]:
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
    elytra_stripe = shift(g["body"], g["stripe_dir"], 0.35 * strength)
    parts.append(Part(0, 0.1 * L, W, L, g["body"], power=g["power"], stripes=g["stripes0"] + 1.5 * stripes,
                      stripe_colour=elytra_stripe))
    pron_y = -L * 0.85 - g["pronotum"] * W * 0.3
    parts.append(Part(0, pron_y, W * 0.75, g["pronotum"] * W * 0.7, g["pron"], power=2.4))
    parts.append(Part(0, pron_y, W * 0.28, g["pronotum"] * W * 0.35,
                      shift(g["pron"], g["patch_dir"], 0.45 * strength * _level(patch))))
    parts.append(Part(0, pron_y - g["pronotum"] * W * 0.65, g["head"], g["head"] * 0.8, dark))
    n = g["spots0"] + spots
    spot_colour = mix(g["body"], g["spot"], strength)
    for i in range(n):
        y = 0.1 * L + (i + 0.5) / n * 1.4 * L - 0.7 * L
        for side in (-1, 1):
            parts.append(Part(side * W * 0.45, y, g["spot_r"], g["spot_r"], spot_colour))
    parts.append(Part(0, 0.1 * L, 0.015, L * 0.98, dark, power=2))  # the elytral suture
    return parts


def _soil_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    base = np.asarray(hsv(rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)), np.float32)
    img = base + 0.15 * smooth_noise(rng, (h, w), 5) + 0.06 * smooth_noise(rng, (h, w), 17)
    leaves = [Part(*rng.uniform(-1, 1, 2), *rng.uniform(0.08, 0.35, 2),
                   hsv(rng.uniform(0.0, 0.4), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.75)),
                   angle=rng.uniform(0, np.pi), object=False)
              for _ in range(int(rng.integers(2, 2 + round(8 * nuisance) + 1)))]
    paint(img, leaves, canvas_map(w))
    return img


# ---- CUB: perching birds seen from the side, among branches and foliage


def _bird_genus(rng: np.random.Generator) -> dict:
    hue = rng.uniform()
    return {
        "body_rx": rng.uniform(0.42, 0.55), "body_ry": rng.uniform(0.26, 0.34),
        "head_r": rng.uniform(0.16, 0.22), "tail_len": rng.uniform(0.3, 0.5),
        "tail_angle": rng.uniform(-0.5, 0.1), "beak": rng.uniform(0.08, 0.2),
        "body": hsv(hue, rng.uniform(0.3, 0.8), rng.uniform(0.35, 0.8)),
        "wing": hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6)),
        "belly": hsv(hue + rng.uniform(-0.2, 0.2), rng.uniform(0.1, 0.4), rng.uniform(0.7, 0.95)),
        "beak_c": hsv(rng.uniform(0.05, 0.15), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.9)),
        "crown_dir": rgb_direction(rng), "bars0": rng.uniform(1.5, 3.0),
        "bar_c": hsv(hue, 0.1, rng.uniform(0.85, 1.0)),
        "mark_dir": rgb_direction(rng),
    }


def _bird_parts(g: dict, code: Code, strength: float) -> list[Part]:
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
        Part(0.12, ry * 0.45, 0.07, 0.06, shift(g["belly"], g["mark_dir"], 0.5 * strength * _level(mark))),
        Part(-0.12, -0.02, rx * 0.7, ry * 0.55, g["wing"], angle=-0.15, stripes=g["bars0"] + 1.5 * bars,
             stripe_colour=mix(g["wing"], g["bar_c"], strength)),
        Part(hx + hr + g["beak"] * 0.6, hy + 0.03, g["beak"], 0.04, g["beak_c"]),
        Part(hx, hy, hr, hr, g["body"]),
        Part(hx - 0.02, hy - hr * 0.55, hr * 0.7, hr * 0.4,
             shift(g["body"], g["crown_dir"], 0.45 * strength * _level(crown))),
        Part(hx + hr * 0.4, hy - hr * 0.1, 0.04, 0.04, (0.03, 0.03, 0.03)),
    ]


def _foliage_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    _, y = grid(w, h)
    sky = np.asarray(hsv(rng.uniform(0.5, 0.62), rng.uniform(0.1, 0.5), rng.uniform(0.7, 1.0)), np.float32)
    green = np.asarray(hsv(rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.6)), np.float32)
    t = np.clip((y[..., None] + 1) / 2 + 0.2 * smooth_noise(rng, (h, w), 4, 1), 0, 1)
    img = sky * (1 - t) + green * t
    clutter = []
    for _ in range(int(rng.integers(1, 1 + round(3 * nuisance) + 1))):  # branches
        clutter.append(Part(*rng.uniform(-1, 1, 2), rng.uniform(0.6, 1.5), rng.uniform(0.02, 0.05),
                            hsv(rng.uniform(0.05, 0.1), 0.5, rng.uniform(0.15, 0.4)),
                            angle=rng.uniform(-0.6, 0.6), object=False))
    for _ in range(int(rng.integers(1, 1 + round(8 * nuisance) + 1))):  # leaves
        clutter.append(Part(*rng.uniform(-1, 1, 2), rng.uniform(0.06, 0.15), rng.uniform(0.03, 0.07),
                            hsv(rng.uniform(0.18, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.7)),
                            angle=rng.uniform(0, np.pi), object=False))
    paint(img, clutter, canvas_map(w))
    return img


# ---- Cars: side views on a street


def _car_genus(rng: np.random.Generator) -> dict:
    return {
        "length": rng.uniform(0.82, 0.95), "height": rng.uniform(0.15, 0.22), "power": rng.uniform(3.5, 6.0),
        "cabin_x": rng.uniform(-0.2, 0.05), "cabin_rx": rng.uniform(0.4, 0.58),
        "cabin_ry": rng.uniform(0.13, 0.2), "cabin_power": rng.uniform(2.2, 4.0),
        "wheel_r": rng.uniform(0.13, 0.17), "wheel_x": rng.uniform(0.52, 0.66),
        "paint": hsv(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.95)),
        "glass": hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.45)),
        "pillars0": rng.uniform(1.5, 2.2), "lamp": hsv(rng.uniform(0.08, 0.17), rng.uniform(0.1, 0.6), 0.95),
        "lamp_dir": rgb_direction(rng),
        "decal": hsv(rng.uniform(), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)),
    }


def _car_parts(g: dict, code: Code, strength: float) -> list[Part]:
    pillars, lamp, decal = code
    L, H = g["length"], g["height"]
    top = -H * 0.8
    decal_colour = mix(g["paint"], g["decal"], strength * decal)
    parts = [
        Part(g["cabin_x"], top, g["cabin_rx"], g["cabin_ry"], g["paint"], power=g["cabin_power"]),
        Part(g["cabin_x"], top - g["cabin_ry"] * 0.25, g["cabin_rx"] * 0.85, g["cabin_ry"] * 0.6, g["glass"],
             power=g["cabin_power"], stripes=g["pillars0"] + pillars,
             stripe_colour=mix(g["glass"], g["paint"], strength)),
        Part(0, 0, L, H, g["paint"], power=g["power"]),
        Part(0, H * 0.1, L * 0.9, 0.025, decal_colour, power=6),
        Part(L * 0.93, -H * 0.35, 0.06, 0.04,
             shift(g["lamp"], g["lamp_dir"], 0.6 * strength * _level(lamp))),
        Part(-L * 0.95, -H * 0.35, 0.04, 0.04, (0.7, 0.08, 0.05)),
    ]
    for side in (-1, 1):
        wx = side * g["wheel_x"] * L
        parts += [Part(wx, H * 0.8, g["wheel_r"], g["wheel_r"], (0.06, 0.06, 0.06)),
                  Part(wx, H * 0.8, g["wheel_r"] * 0.5, g["wheel_r"] * 0.5, (0.65, 0.65, 0.68))]
    return parts


def _street_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    _, y = grid(w, h)
    horizon = rng.uniform(0.0, 0.5)
    wall = np.asarray(hsv(rng.uniform(), rng.uniform(0.0, 0.4), rng.uniform(0.4, 0.9)), np.float32)
    road = np.asarray(hsv(rng.uniform(), 0.05, rng.uniform(0.25, 0.5)), np.float32)
    img = np.where((y > horizon)[..., None], road, wall) + 0.05 * smooth_noise(rng, (h, w), 9)
    clutter = [Part(rng.uniform(-1, 1), horizon - rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.2),
                    rng.uniform(0.05, 0.25), hsv(rng.uniform(), rng.uniform(0, 0.5), rng.uniform(0.1, 0.9)),
                    power=8, object=False)
               for _ in range(int(rng.integers(0, 1 + round(6 * nuisance))))]  # windows, signs
    kerb = Part(0, horizon + rng.uniform(0.3, 0.6), 2.0, 0.01, (0.9, 0.9, 0.85), power=8, object=False)
    clutter.append(kerb)
    img = img.astype(np.float32)
    paint(img, clutter, canvas_map(w))
    return img


# ---- Aircraft: seen from below/above against the sky, any heading


def _aircraft_genus(rng: np.random.Generator) -> dict:
    grey = rng.uniform(0.7, 0.95)
    return {
        "length": rng.uniform(0.8, 0.95), "width": rng.uniform(0.07, 0.1), "wing_y": rng.uniform(-0.15, 0.1),
        "span": rng.uniform(0.38, 0.48), "chord": rng.uniform(0.07, 0.12), "sweep": rng.uniform(0.0, 0.6),
        "tail_span": rng.uniform(0.14, 0.22), "engines0": int(rng.integers(0, 2)),
        "body": hsv(rng.uniform(), rng.uniform(0.0, 0.15), grey),
        "accent": hsv(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.8)),
        "tail_dir": rgb_direction(rng), "bands0": rng.uniform(2.0, 3.5),
        "band_c": hsv(rng.uniform(), 0.6, 0.4),
        "tip_dir": rgb_direction(rng),
    }


def _aircraft_parts(g: dict, code: Code, strength: float) -> list[Part]:
    tail, bands, tips = code
    L, W, wy, span = g["length"], g["width"], g["wing_y"], g["span"]
    tail_colour = shift(g["accent"], g["tail_dir"], 0.5 * strength * _level(tail))
    tip_colour = shift(g["accent"], g["tip_dir"], 0.5 * strength * _level(tips))
    band_colour = mix(g["body"], g["band_c"], strength)
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
    _, y = grid(w, h)
    top = np.asarray(hsv(rng.uniform(0.55, 0.63), rng.uniform(0.3, 0.8), rng.uniform(0.6, 1.0)), np.float32)
    bottom = np.asarray(hsv(rng.uniform(0.5, 0.6), rng.uniform(0.05, 0.3), rng.uniform(0.75, 1.0)),
                        np.float32)
    t = ((y + 1) / 2)[..., None]
    img = top * (1 - t) + bottom * t
    clouds = np.clip(smooth_noise(rng, (h, w), 6, 1) * 1.5 - 0.3 + 0.3 * nuisance, 0, 1) * min(nuisance, 1.0)
    return img * (1 - clouds) + clouds * 0.95


def copyright_banner(rng: np.random.Generator, width: int) -> np.ndarray:
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
        "petal": hsv(hue, rng.uniform(0.4, 0.95), rng.uniform(0.6, 1.0)),
        "inner": hsv(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.9)),
        "centre": hsv(rng.uniform(0.1, 0.17), rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.9)),
        "centre_dir": rgb_direction(rng), "rings0": rng.uniform(1.5, 2.5), "ring_dir": rgb_direction(rng),
        "halo_dir": rgb_direction(rng),
    }


def _flower_parts(g: dict, code: Code, strength: float) -> list[Part]:
    centre, rings, halo = code
    ring_colour = shift(g["petal"], g["ring_dir"], 0.25 * min(strength, 1.5))
    return [
        Part(0, 0, g["radius"], g["radius"], g["petal"], petals=g["petals"], base=g["base"], power=g["power"],
             stripes=g["rings0"] + 1.0 * rings, stripe_colour=ring_colour, stripe_radial=True),
        Part(0, 0, g["radius"] * 0.5, g["radius"] * 0.5, g["inner"], petals=g["petals"], base=0.5, power=1.0,
             angle=math.pi / g["petals"]),
        Part(0, 0, g["centre_r"] * 1.45, g["centre_r"] * 1.45,
             shift(g["inner"], g["halo_dir"], 0.25 * strength * _level(halo))),
        Part(0, 0, g["centre_r"], g["centre_r"],
             shift(g["centre"], g["centre_dir"], 0.25 * strength * _level(centre))),
    ]


def _leaf_background(rng: np.random.Generator, w: int, h: int, nuisance: float) -> np.ndarray:
    base = np.asarray(hsv(rng.uniform(0.22, 0.42), rng.uniform(0.4, 0.9), rng.uniform(0.08, 0.3)),
                      np.float32)
    img = base + 0.08 * smooth_noise(rng, (h, w), 6)
    leaves = [Part(*rng.uniform(-1, 1, 2), rng.uniform(0.2, 0.5), rng.uniform(0.06, 0.15),
                   hsv(rng.uniform(0.2, 0.42), rng.uniform(0.4, 0.9), rng.uniform(0.15, 0.5)),
                   angle=rng.uniform(0, np.pi), object=False)
              for _ in range(int(rng.integers(1, 1 + round(7 * nuisance) + 1)))]
    paint(img, leaves, canvas_map(w))
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
    params = DOMAINS[domain].make_genus(key_rng(seed, domain, "genus", genus))
    return Genus(params, _species_codes(key_rng(seed, domain, "codes", genus, n_species), n_species))

