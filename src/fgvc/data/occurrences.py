"""Where the training data saw each class: a compact table a checkpoint carries for ``--region``.

``fgvc predict --region LAT_MIN,LAT_MAX,LON_MIN,LON_MAX`` allows only the classes with a training
observation inside the box. Deployment machines rarely hold the training set, so the checkpoint keeps
the training split's distinct (class, location) pairs, with locations rounded to 0.1° (about 11 km,
finer than most observations' stated uncertainty): ``{"label": int32 [M], "lat10": int16 [M],
"lon10": int16 [M]}``, degrees × 10. Plain tensors, so ``torch.load(weights_only=True)`` reads them.
Even iNat 2021 (2.7 M images) gives at most a few million pairs — megabytes beside the weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from fgvc.data.index import SampleIndex
from fgvc.data.metadata import OK
from fgvc.data.records import Sample


def occurrence_table(samples: SampleIndex | Iterable[Sample]) -> dict[str, torch.Tensor]:
    """The distinct (label, lat, lon at 0.1°) of the samples that have a valid location."""
    index = samples if isinstance(samples, SampleIndex) else SampleIndex.from_samples(list(samples))
    status = index.columns["meta_status"]
    valid = (status[:, 0] == OK) & (status[:, 1] == OK)
    rows = np.stack([index.labels[valid].astype(np.int64), np.round(index.columns["lat"][valid] * 10),
                     np.round(index.columns["lon"][valid] * 10)], axis=1).astype(np.int64)
    table = np.unique(rows.reshape(-1, 3), axis=0)
    return {"label": torch.from_numpy(table[:, 0].astype(np.int32)),
            "lat10": torch.from_numpy(table[:, 1].astype(np.int16)),
            "lon10": torch.from_numpy(table[:, 2].astype(np.int16))}


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"LAT_MIN,LAT_MAX,LON_MIN,LON_MAX"`` in degrees. A box may cross the antimeridian
    (``LON_MIN > LON_MAX``, e.g. ``50,70,170,-170``). Raises ``ValueError`` saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    try:
        lat_min, lat_max, lon_min, lon_max = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"region {text!r}: expected four numbers LAT_MIN,LAT_MAX,LON_MIN,LON_MAX") from None
    if not (-90 <= lat_min <= lat_max <= 90):
        raise ValueError(f"region {text!r}: latitudes must satisfy -90 <= LAT_MIN <= LAT_MAX <= 90")
    if not (-180 <= lon_min <= 180 and -180 <= lon_max <= 180):
        raise ValueError(f"region {text!r}: longitudes must be in -180..180")
    return lat_min, lat_max, lon_min, lon_max


def classes_in_box(table: dict[str, torch.Tensor], box: Sequence[float]) -> set[int]:
    """Labels with at least one training location inside ``box`` (edges included, at 0.1°)."""
    lat_min, lat_max, lon_min, lon_max = box
    lat, lon = table["lat10"].numpy() / 10, table["lon10"].numpy() / 10
    inside = (lat >= lat_min) & (lat <= lat_max)
    if lon_min <= lon_max:
        inside &= (lon >= lon_min) & (lon <= lon_max)
    else:  # across the antimeridian
        inside &= (lon >= lon_min) | (lon <= lon_max)
    return set(table["label"].numpy()[inside].tolist())
