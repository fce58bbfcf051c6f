"""The prediction rule at deployment: the metadata after precedence, the model, a prior, an allow-list.

Per image, the metadata comes from the command line (``cli``, for every image), else from the
manifest (``csv``: a CSV or JSONL file with ``path[,lat,lon,date]``), else from the photo's EXIF
(``exif``), field by field (the location as a pair, the date alone); ``--ignore-location`` /
``--ignore-date`` drop a field whatever its source (captive animals, garden plants). A model (or a
prior) reads its metadata only when every field it needs is there — the missing-metadata rule of
training — and each row states what was used and where it came from.

``Predictor`` turns images and their metadata into rows: the model's own probabilities (``raw``); a
PriorsNet prior multiplies them by ``σ(s_y(loc))`` and renormalises (a soft re-rank, as in
evaluation); an allow-list (``--species-list``, ``--region``) zeroes the other classes (a hard
filter). When the best raw class is not allowed, the row names it, the best allowed class and the
genus both share (taxonomic roll-up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fgvc.data.metadata import check_metadata, encode_metadata
from fgvc.data.occurrences import classes_in_box, parse_box
from fgvc.data.records import Sample
from fgvc.deploy.exif import PhotoMetadata
from fgvc.deploy.model import InferenceModel
from fgvc.errors import FgvcError
from fgvc.methods.priors import PriorsNet, combine_with_image, load_priors, prior_logits

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")  # then species, common_name
SOURCES = ("cli", "csv", "exif")  # precedence, highest first


# ---------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class Given:
    """Metadata given for an image by one source; None = not given. Values as written (validated later)."""

    lat: object = None
    lon: object = None
    date: object = None


@dataclass(frozen=True)
class Metadata:
    """The metadata of one image after precedence: values and the source of each (or None)."""

    lat: float | None = None
    lon: float | None = None
    date: str | None = None
    location_source: str | None = None
    date_source: str | None = None


def _valid_location(given: Given) -> tuple[float, float] | None:
    sample = Sample("", -1, given.lat, given.lon)
    if check_metadata(sample, ("geo",)) is not None:
        return None
    return float(given.lat), float(given.lon)


def _valid_date(given: Given) -> str | None:
    if check_metadata(Sample("", -1, date=given.date), ("temporal",)) is not None:
        return None
    return str(given.date).strip()


def _given(value: object) -> bool:
    """A value was given (an empty manifest cell is not one)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def resolve_metadata(sources: dict[str, Given | PhotoMetadata | None], ignore_location: bool = False,
                     ignore_date: bool = False) -> tuple[Metadata, list[tuple[str, str]]]:
    """Field by field, the first valid value in the order cli > csv > exif.

    Returns the metadata and the problems met as ``(source, message)``: a value given but invalid
    (out of range, not a number, not a date), which is then treated as missing.
    """
    location = date = None
    loc_source = date_source = None
    problems = []
    for name in SOURCES:
        given = sources.get(name)
        if given is None:
            continue
        if location is None and not ignore_location and (_given(given.lat) or _given(given.lon)):
            location = _valid_location(given)
            loc_source = name if location else None
            if location is None:
                problems.append((name, f"location ({given.lat}, {given.lon}) is not a valid latitude/longitude"))
        if date is None and not ignore_date and _given(given.date):
            date = _valid_date(given)
            date_source = name if date else None
            if date is None:
                problems.append((name, f"date {given.date!r} is not a date"))
    lat, lon = location if location else (None, None)
    return Metadata(lat, lon, date, loc_source, date_source), problems


# --------------------------------------------------------------------------------- prediction rule


def load_prior(source: str | Path, model: InferenceModel) -> PriorsNet:
    """A PriorsNet from a run folder (``RUN/checkpoints/priors.pt``) or its file, checked against the
    model's classes."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "priors.pt"
    prior = load_priors(path)
    if prior.classes is not None and list(prior.classes) != list(model.classes):
        raise FgvcError(f"{path}: the prior was trained on {len(prior.classes)} other classes, not the "
                        f"{len(model.classes)} classes of {model.source}")
    if prior.settings["num_classes"] != len(model.classes):
        raise FgvcError(f"{path}: the prior has {prior.settings['num_classes']} classes, the model "
                        f"{len(model.classes)}")
    return prior


def read_species_list(path: str | Path, model: InferenceModel) -> tuple[set[int], list[str]]:
    """Class indices named by a file of class names or genus names (one per line, ``#`` comments;
    case and spaces/underscores are ignored). Returns (allowed classes, lines that match nothing)."""
    def key(text: str) -> str:
        return " ".join(text.replace("_", " ").split()).casefold()

    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FgvcError(f"{path}: cannot read the species list ({exc})") from None
    names = [line.split("#", 1)[0].strip() for line in lines]
    names = [n for n in names if n]
    by_name: dict[str, set[int]] = {}
    columns = [model.classes] + [model.taxonomy[r] for r in ("genus", "common_name") if r in model.taxonomy]
    for column in columns:
        for index, value in enumerate(column):
            if value:
                by_name.setdefault(key(value), set()).add(index)
    allowed, unknown = set(), []
    for name in names:
        matched = by_name.get(key(name))
        allowed |= matched or set()
        unknown += [] if matched else [name]
    if not allowed:
        raise FgvcError(f"{path}: none of its {len(names)} names is a class, common name or genus of the model "
                        f"(e.g. {', '.join(model.classes[:3])})")
    return allowed, unknown


def region_classes(text: str, model: InferenceModel) -> set[int]:
    """Classes with a training observation inside ``LAT_MIN,LAT_MAX,LON_MIN,LON_MAX``."""
    try:
        box = parse_box(text)
    except ValueError as exc:
        raise FgvcError(f"--region: {exc}") from None
    if model.occurrences is None:
        raise FgvcError(f"--region: {model.source} carries no training locations (checkpoints written "
                        "by fgvc train since this version do); use --species-list instead")
    allowed = classes_in_box(model.occurrences, box)
    if not allowed:
        raise FgvcError(f"--region {text}: no class was observed inside this box in the training data")
    return allowed


class Predictor:
    """A model and its deployment rule: which metadata it reads, prior, allow-list, top-k rows."""

    def __init__(self, model: InferenceModel, prior: PriorsNet | None = None, allowed: set[int] | None = None,
                 topk: int = 5):
        if topk < 1:
            raise FgvcError(f"--topk {topk}: must be at least 1")
        self.model, self.prior, self.topk = model, prior, min(topk, len(model.classes))
        self.allowed = None
        if allowed is not None:
            self.allowed = torch.zeros(len(model.classes), dtype=torch.bool)
            self.allowed[sorted(allowed)] = True
        self.prior_use = tuple(prior.use) if prior is not None else ()
        self.ranks = [rank for rank in RANKS if rank in model.taxonomy]  # iNaturalist-style models
        genus = model.taxonomy.get("genus")
        self.genus = list(genus) if genus and any(genus) else None

    @property
    def reranks(self) -> bool:
        return self.prior is not None or self.allowed is not None

    def encode(self, metas: Sequence[Metadata], use: tuple[str, ...]) -> torch.Tensor:
        """``[B, D]`` encoded metadata for ``use`` (rows of zeros where a needed field is missing)."""
        if not use:
            return torch.zeros(len(metas), 0)
        return torch.stack([torch.from_numpy(encode_metadata(m.lat, m.lon, m.date, use)) for m in metas])

    def scores(self, images: torch.Tensor, metas: Sequence[Metadata]) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw probabilities, final probabilities), ``[B, C]`` each."""
        logits = self.model(images, self.encode(metas, self.model.metadata) if self.model.metadata else None)
        raw = logits.softmax(dim=1)
        log_final = F.log_softmax(logits, dim=1)
        if self.prior is not None:
            meta = self.encode(metas, self.prior_use)
            log_final = combine_with_image(logits, prior_logits(self.prior, meta), meta.any(dim=1))
        if self.allowed is not None:
            log_final = log_final.masked_fill(~self.allowed, -math.inf).log_softmax(dim=1)
        return raw, log_final.exp()

    def used(self, meta: Metadata) -> Metadata:
        """The part of ``meta`` the model or the prior actually reads (all of a reader's fields present)."""
        geo = temporal = False
        for use in (self.model.metadata, self.prior_use):
            if use and check_metadata(Sample("", -1, meta.lat, meta.lon, meta.date), use) is None:
                geo, temporal = geo or "geo" in use, temporal or "temporal" in use
        return Metadata(meta.lat if geo else None, meta.lon if geo else None, meta.date if temporal else None,
                        meta.location_source if geo else None, meta.date_source if temporal else None)

    def rows(self, names: Sequence[str], images: torch.Tensor, metas: Sequence[Metadata]) -> list[dict]:
        raw, final = self.scores(images, metas)
        return [self.row(name, r, f, self.used(m)) for name, r, f, m in zip(names, raw, final, metas)]

    def top(self, probs: torch.Tensor, allowed_only: bool = False, k: int | None = None) -> list[dict]:
        """The top-k classes (only allowed ones with ``allowed_only``); probabilities to 6 significant
        digits (float32 carries about 7)."""
        values, indices = probs.topk(min(k or self.topk, len(probs)))
        return [{"class": self.model.classes[i], "index": i, "probability": float(f"{p:.6g}")}
                for p, i in zip(values.tolist(), indices.tolist())
                if not (allowed_only and self.allowed is not None and not self.allowed[i])]

    def row(self, name: str, raw: torch.Tensor, final: torch.Tensor, used: Metadata, k: int | None = None) -> dict:
        """One image's result: the final top-k, the raw top-k when something re-ranked them, the metadata
        used and its source, the taxonomy of the top class, the roll-up with an allow-list."""
        sources = list(dict.fromkeys(s for s in (used.location_source, used.date_source) if s))
        row = {"image": name, "status": "ok", "error": None, "lat": used.lat, "lon": used.lon, "date": used.date,
               "metadata_source": "+".join(sources) or "none", "top": self.top(final, allowed_only=True, k=k)}
        if self.reranks:
            row["raw_top"] = self.top(raw, k=k)
        if self.ranks:
            row["taxonomy"] = self.taxonomy(row["top"][0]["index"])
        if self.allowed is not None:
            row["rollup"] = self.rollup(int(raw.argmax()), row["top"][0]["index"])
        return row

    def taxonomy(self, index: int) -> dict:
        """Kingdom ... genus, species (the class name) and common name of class ``index``."""
        tax = self.model.taxonomy
        out = {rank: tax[rank][index] for rank in self.ranks}
        out["species"] = self.model.classes[index]
        if "common_name" in tax:
            out["common_name"] = tax["common_name"][index]
        return out

    def rollup(self, best_raw: int, best_allowed: int) -> dict | None:
        """None when the best raw class is allowed; else it, the best allowed class and their genus."""
        if self.allowed[best_raw]:
            return None
        genus = None
        if self.genus and self.genus[best_raw] == self.genus[best_allowed]:
            genus = self.genus[best_raw]
        return {"raw_class": self.model.classes[best_raw], "allowed_class": self.model.classes[best_allowed],
                "genus": genus}


def error_row(name: str, reason: str) -> dict:
    return {"image": name, "status": "unreadable", "error": reason, "lat": None, "lon": None, "date": None,
            "metadata_source": "none", "top": []}
