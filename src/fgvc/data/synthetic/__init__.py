"""The procedural fine-grained benchmark, written to disk in the real formats.

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

The package, from the bottom up: ``options`` (what decides a benchmark), ``seeds`` (named keys),
``draw`` (soft-edged parts and colours), ``domains`` (the five visual worlds), ``render`` (one
image), ``geography`` (ranges, places, dates), ``names`` (pseudo-Latin taxonomy), ``writers`` (one
module per on-disk format) and ``benchmark`` (everything, cached behind ``synth.json``).

``write_inat`` writes the single-domain set in the iNaturalist-2021 layout, ``write_multidomain`` four
visually distinct domains in the CUB-200-2011, Stanford Cars, FGVC-Aircraft and Flowers-102 layouts,
``write_benchmark`` both plus a ``synth.json`` summary (and does nothing when that summary matches).
"""

from fgvc.data.synthetic.benchmark import FORMAT_VERSION, write_benchmark
from fgvc.data.synthetic.domains import BANNER_HEIGHT, DOMAINS, Genus, make_genus
from fgvc.data.synthetic.geography import Range, sample_date, sample_location, species_ranges
from fgvc.data.synthetic.options import MULTI_DOMAINS, SynthOptions
from fgvc.data.synthetic.render import render
from fgvc.data.synthetic.writers import WRITERS, inat_categories, write_inat, write_multidomain

__all__ = [
    "BANNER_HEIGHT", "DOMAINS", "FORMAT_VERSION", "MULTI_DOMAINS", "WRITERS", "Genus", "Range",
    "SynthOptions", "inat_categories", "make_genus", "render", "sample_date", "sample_location",
    "species_ranges", "write_benchmark", "write_inat", "write_multidomain",
]
