"""What the writers share: the multi-domain images of one domain, class names, file helpers.

Every file is written so that the same options give the same bytes: JSON is compact with a stable
key order, ``.mat`` files carry a fixed header instead of scipy's time stamp.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from fgvc.data.synthetic.domains import copyright_banner, make_genus
from fgvc.data.synthetic.draw import Box
from fgvc.data.synthetic.mechanisms import species_look
from fgvc.data.synthetic.names import epithets, unique_words
from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.render import render
from fgvc.data.synthetic.seeds import image_rng


@dataclass
class DomainImage:
    cls: int  # 0-based class
    index: int  # index within the class
    split: str  # train / val / test
    pixels: np.ndarray
    box: Box


def domain_images(opts: SynthOptions, domain: str, banner: bool = False) -> list[DomainImage]:
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
            rng = image_rng(opts.seed, domain, cls, "train", i)  # the split is a view, not part of the key
            look = species_look(opts, domain, genera[g], j, cls, i)
            pixels, box = render(domain, genera[g], look, rng, opts.size, opts.detail_strength, opts.nuisance)
            if banner:
                strip = (copyright_banner(rng, opts.size) * 255).astype(np.uint8)
                pixels = np.concatenate([pixels, strip], axis=0)
            out.append(DomainImage(cls, i, split, pixels, box))
    return out


def domain_class_names(opts: SynthOptions, domain: str, suffix: str) -> list[tuple[str, str, str]]:
    """(genus word, English adjective, Latin epithet) per class, genus-major."""
    words = unique_words(opts.seed, domain, "genus-name", opts.domain_genera, 2, suffix)
    return [(words[g], adj, latin) for g in range(opts.domain_genera)
            for latin, adj in epithets(opts.seed, domain, g, opts.domain_species_per_genus)]


def split_counts(images: list[DomainImage]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for im in images:
        counts[im.split] = counts.get(im.split, 0) + 1
    return counts


def savemat(path: Path, arrays: dict) -> None:
    """``scipy.io.savemat`` with a fixed header: scipy stamps the creation time into the first 116
    bytes, which would make two identical benchmarks differ byte for byte."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, arrays)
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: fgvc.data.synthetic".ljust(116, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def uint_dtype(largest: int) -> type:
    """The smallest unsigned type, as MATLAB stored the official files (uint8 labels, uint16 ids)."""
    return np.uint8 if largest < 2**8 else np.uint16 if largest < 2**16 else np.uint32


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def write_json(path: Path, obj: dict) -> None:
    """Compact, key-order-stable JSON written atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
    tmp.replace(path)
