"""The per-format writers; ``write_multidomain`` writes the chosen domains, each in its real format."""

from __future__ import annotations

import os
from pathlib import Path

from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.writers.aircraft import write_aircraft
from fgvc.data.synthetic.writers.cars import write_cars
from fgvc.data.synthetic.writers.cub import write_cub
from fgvc.data.synthetic.writers.flowers import write_flowers
from fgvc.data.synthetic.writers.inat import inat_categories, write_inat

__all__ = ["WRITERS", "inat_categories", "write_inat", "write_multidomain"]

WRITERS = {"cub": write_cub, "cars": write_cars, "aircraft": write_aircraft, "flowers": write_flowers}


def write_multidomain(out_dir: str | os.PathLike, opts: SynthOptions | None = None) -> dict:
    """Write the chosen domains (``opts.domains``), each in its real format under ``out_dir/<domain>/``."""
    opts = opts or SynthOptions()
    out = Path(out_dir)
    return {"domains": {d: WRITERS[d](out / d, opts) for d in opts.domains}}

