"""The record model: one ``Sample`` per image, the ``DatasetSource`` a format reader returns, and the
``Splits`` a run uses (made by ``fgvc.data.splits.prepare_splits``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fgvc.errors import DataError

# A date is either an ISO string ("YYYY-MM-DD[ HH:MM:SS...]"), a datetime.date, or a float in [0, 1]
# giving the fraction of the year (iNaturalist 2017/2018 ``date_c``).
DateLike = str | dt.date | float | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled image. ``label`` is 0-based; ``id`` is the record id in the annotation file."""

    path: str
    label: int
    lat: float | None = None
    lon: float | None = None
    date: DateLike = None
    dataset: str = ""
    id: str = ""
    trim_bottom: int = 0  # pixels to cut from the bottom (FGVC-Aircraft copyright banner)
    box: tuple[float, float, float, float] | None = None  # (x, y, w, h) when the format gives one
    row: int | None = None  # the image is row ``row`` of the array file ``path`` (CIFAR pickles), not a file


@dataclass
class DatasetSource:
    """What a reader returns: class names (index = label) and the official splits by name.

    ``problems`` lists bad records that were skipped (each names file and record), so that
    ``fgvc data verify`` and the trainer's log can report them instead of dropping silently.
    ``default_splits`` is (train, val, test): the split names the papers use; val may be None,
    in which case a stratified hold-out of train is used for model selection. test is None only for
    a user's folder/manifest that has no test (nor val) split.
    ``taxonomy`` maps a rank to its value per class (index = label), e.g. ``taxonomy["genus"]`` for
    iNaturalist, so analysis can pick the species of one genus; empty when the format has none.
    """

    name: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    default_splits: tuple[str, str | None, str | None]
    problems: list[str] = field(default_factory=list)
    taxonomy: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Splits:
    """The three splits a run uses, and how each was obtained (stated in reports).

    A split is a list of ``Sample``s, or for ``data.format=shards`` a ``ShardIndex`` (a sequence that
    reads its records from the tar files only when asked).
    """

    source: DatasetSource
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    names: dict[str, str]  # split role -> where it came from, e.g. {"val": "holdout 10% of train"}
    # (dataset name, class count) in label order: dataset n owns the labels after the first n groups'
    # classes. One group for a single dataset; one per source with ``data.joint``.
    groups: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = [(self.source.name, len(self.source.classes))]

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    def samples(self, role: str) -> list[Sample]:
        """The samples of ``role`` ("train", "val" or "test")."""
        if role not in ("train", "val", "test"):
            raise DataError(f"split '{role}': expected one of train, val, test")
        return getattr(self, role)
