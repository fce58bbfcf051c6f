"""Write the web page's world map, ``src/fgvc/deploy/static/world.json``, from Natural Earth data.

Source: Natural Earth 1:110m Admin 0 countries (public domain, naturalearthdata.com), as shipped in
the geopandas 0.14 wheel (``geopandas/datasets/naturalearth_lowres``; the dataset was removed from
geopandas 1.0). The page needs outlines, not a GIS: each polygon ring is kept as a flat list of
``lon, lat`` pairs rounded to 0.1° with points closer than ``--tolerance`` degrees to the last kept
one dropped, and rings that end up with fewer than 4 points are left out. Country names are not
kept. Regenerate with (pyshp reads the shapefile; neither package is a dependency of fgvc)::

    pip download geopandas==0.14.4 --no-deps -d /tmp/ne && pip install pyshp
    python tools/world_map.py /tmp/ne/geopandas-0.14.4-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import io
import json
import math
import zipfile
from pathlib import Path

import shapefile  # pyshp

MEMBER = "geopandas/datasets/naturalearth_lowres/naturalearth_lowres"
OUT = Path(__file__).resolve().parents[1] / "src" / "fgvc" / "deploy" / "static" / "world.json"


def rings(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        reader = shapefile.Reader(shp=io.BytesIO(z.read(MEMBER + ".shp")), dbf=io.BytesIO(z.read(MEMBER + ".dbf")),
                                  shx=io.BytesIO(z.read(MEMBER + ".shx")))
        for shape in reader.shapes():
            bounds = list(shape.parts) + [len(shape.points)]
            for start, end in zip(bounds, bounds[1:]):
                yield shape.points[start:end]


def simplify(ring, tolerance: float) -> list[float]:
    kept = [ring[0]]
    for x, y in ring[1:]:
        if math.dist(kept[-1], (x, y)) >= tolerance:
            kept.append((x, y))
    return [round(v, 1) for point in kept for v in point] if len(kept) >= 4 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="geopandas-0.14.x-py3-none-any.whl")
    parser.add_argument("--tolerance", type=float, default=0.3, help="degrees")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    polygons = [flat for flat in (simplify(r, args.tolerance) for r in rings(args.wheel)) if flat]
    doc = {"source": "Natural Earth 1:110m Admin 0 countries (public domain), via the geopandas 0.14 wheel's "
                     "naturalearth_lowres; simplified by tools/world_map.py",
           "format": "rings of lon,lat pairs (degrees, flat lists)", "rings": polygons}
    args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{args.out}: {len(polygons)} rings, {sum(len(p) for p in polygons) // 2} points, "
          f"{args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
