"""The mechanisms the four methods rely on, as switches of the benchmark (each off by default).

The default benchmark tells siblings apart by details drawn at fixed places of the object, and by
where and when they live, each on its own. Each switch adds the structure one method's paper claims
to exploit (docs/synthetic.md has what each one tests and how that is checked):

* ``regional_appearance`` (Dynamic MLP): siblings come in pairs that share two regions and a
  season; in the second region each shows its partner's details. A detail then means one species
  here and the other there, and no sum of an image score and a location score can read that.
* ``local_evidence`` (RMG-PMSI): siblings share one look on the whole object and differ only by a
  small mark (a few per cent of the object) at a random place on it.
* ``shared_cues`` (the erudite model): the first detail axis of every multi-domain species is drawn
  as a badge that looks the same in all domains; the other two stay each domain's own.
* ``transfer_target`` (CTC): the target domain's first axis is the badge, and every other domain
  carries the badge at a random level: detail the source images hold but their labels never need.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from fgvc.data.synthetic.domains import Code, Genus, Look, code_levels
from fgvc.data.synthetic.draw import Part, mix
from fgvc.data.synthetic.geography import Range, habitats, species_ranges
from fgvc.data.synthetic.seeds import key_rng

if TYPE_CHECKING:  # options imports this module's palette
    from fgvc.data.synthetic.options import SynthOptions

# The choices below were fixed before any method was trained on a set they change (docs/synthetic.md).
NEUTRAL: Code = (0, 0, 0)  # the code all siblings show on the object when another part carries theirs
MARK_RADIUS = 0.14  # local evidence: the mark's radius in object units (the object spans about [-1, 1])
MARK_SPREAD = 0.6  # ... its centre is uniform in the largest object part, shrunk by this factor
BADGE_RADIUS = 0.13  # the badge's half-side in object units, at the centre of the largest object part
# One colour per badge level, the same in every domain (so at most 4 levels: 64 species per genus).
BADGE_COLOURS = ((0.95, 0.85, 0.15), (0.15, 0.8, 0.9), (0.85, 0.2, 0.65), (0.95, 0.95, 0.95))
RING = (0.05, 0.05, 0.05)  # the dark rim that makes marks and badges stand out on any body colour


# --- which look a species shows in one image


def species_look(opts: SynthOptions, domain: str, genus: Genus, species: int, cls: int, index: int,
                 blob: int = 0) -> Look:
    """The look of image ``index`` of class ``cls`` (species ``species`` of ``genus``) under the switches.

    ``blob`` is the index of the range blob its location came from (iNat): with regional appearance
    a paired species shows its partner's code in its second region.
    """
    code = genus.codes[species]
    if opts.regional_appearance and domain == "inat" and blob == 1:
        code = genus.codes[partner(species, len(genus.codes))]
    badge = None
    if domain != "inat" and (opts.shared_cues or opts.transfer_target == domain):
        badge, code = code[0], (0, code[1], code[2])
    elif domain != "inat" and opts.transfer_target:
        levels = code_levels(opts.domain_species_per_genus)  # the target's badge levels
        badge = int(key_rng(opts.seed, domain, "badge", cls, index).integers(levels))
    if opts.local_evidence:
        return Look(NEUTRAL, mark=code, badge=badge)
    return Look(code, badge=badge)


def partner(species: int, species_per_genus: int) -> int:
    """The sibling a species is paired with under regional appearance (0-1, 2-3, ...; an odd last one
    is its own partner: it keeps its look everywhere)."""
    other = species ^ 1
    return other if other < species_per_genus else species


# --- regional appearance: the pairs' ranges


def inat_ranges(opts: SynthOptions) -> list[Range]:
    """The iNat classes' ranges: the default ones, or the paired ones of regional appearance."""
    if opts.regional_appearance:
        return regional_ranges(opts.seed, opts.genera, opts.species_per_genus)
    return species_ranges(opts.seed, opts.genera, opts.species_per_genus)


def regional_ranges(seed: int, genera: int, species_per_genus: int) -> list[Range]:
    """Ranges (genus-major) where the two species of a pair share one ``Range``: two equally likely
    regions (blob 0 and 1) and one season, so where and when never tell partners apart.

    Each genus takes two of three habitats shared by all genera, and gives each pair its own seasonal
    slot; at one place and time several genera are active, each with one pair.
    """
    pool = habitats(seed, 3)
    slots = math.ceil(species_per_genus / 2)
    ranges = []
    for g in range(genera):
        rng = key_rng(seed, "inat", "regional-range", g, species_per_genus)
        first, second = (pool[i] for i in rng.permutation(len(pool))[:2])
        offset = rng.uniform()
        pairs = []
        for slot in range(slots):
            blobs = [(lat, lon, rng.uniform(5, 10), 1.0) for lat, lon in (first, second)]
            peak = (offset + slot / slots + rng.normal(0, 0.02)) % 1.0
            pairs.append(Range(blobs, peak, rng.uniform(0.07, 0.11) * 2 / max(slots, 2)))
        ranges += [pairs[j // 2] for j in range(species_per_genus)]
    return ranges


# --- the parts the looks add to an object


def mark_parts(parts: list[Part], code: Code, levels: int, rng: np.random.Generator,
               strength: float) -> list[Part]:
    """Local evidence: a small dark-rimmed disc at a random place on the object's largest part.

    The fill colour is the code: each axis sets one RGB channel, from 0.15 to 0.85 at strength 1
    (grey for every code at strength 0).
    """
    body = _largest(parts)
    radius = MARK_SPREAD * math.sqrt(rng.uniform())
    theta = rng.uniform(0, 2 * math.pi)
    u, v = radius * body.rx * math.cos(theta), radius * body.ry * math.sin(theta)
    c, s = math.cos(body.angle), math.sin(body.angle)
    x, y = body.cx + c * u - s * v, body.cy + s * u + c * v
    fill = tuple(float(np.clip(0.5 + 0.7 * strength * (k / max(levels - 1, 1) - 0.5), 0, 1)) for k in code)
    inner = MARK_RADIUS * 0.7
    return [Part(x, y, MARK_RADIUS, MARK_RADIUS, RING), Part(x, y, inner, inner, fill)]


def badge_parts(parts: list[Part], level: int, strength: float) -> list[Part]:
    """The shared part type: a dark-rimmed rounded square at the centre of the object's largest part,
    its colour the level's (grey at strength 0), the same in every domain."""
    body = _largest(parts)
    fill = mix((0.5, 0.5, 0.5), BADGE_COLOURS[level], strength)
    return [Part(body.cx, body.cy, BADGE_RADIUS, BADGE_RADIUS, RING, angle=body.angle, power=6),
            Part(body.cx, body.cy, BADGE_RADIUS * 0.75, BADGE_RADIUS * 0.75, fill, angle=body.angle, power=6)]


def _largest(parts: list[Part]) -> Part:
    return max((p for p in parts if p.object), key=lambda p: p.rx * p.ry)
