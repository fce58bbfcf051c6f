"""Several datasets as one (the erudite model, docs/methods/erudite.md): the union of their label spaces.

Each source of ``data.joint`` is read and split on its own (``fgvc.data.splits.prepare_splits`` on
``source_config``), exactly as a single-dataset run would (official splits, or the seeded stratified
hold-outs); ``merge_joint`` then concatenates the splits: dataset n's labels are shifted by the
class counts of the datasets before it, its class names become ``"<dataset>/<class>"`` and each
sample's ``dataset`` field is the dataset's name. ``Splits.groups``
records (name, class count) in label order, so a method can tell which dataset a label belongs to.

``data.joint_target=dataset`` relabels every sample with its dataset's index instead (classes are the
dataset names): the coarse classifier of the Single comparison, which picks the expert model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from fgvc.data.records import DatasetSource, Sample, Splits
from fgvc.data.section import DataConfig, JointSource

ROLES = ("train", "val", "test")
OWN_FIELDS = ("format", "root", "train_split", "val_split", "test_split", "level", "crop_banner")


def source_config(cfg: DataConfig, source: JointSource) -> DataConfig:
    """The single-dataset config of one source: its own files and splits, everything else shared."""
    own = {key: getattr(source, key) for key in OWN_FIELDS}
    return DataConfig.model_validate(cfg.model_dump() | own | {"name": source.dataset_name, "joint": []})


def _shifted(samples: list[Sample], offset: int, name: str) -> list[Sample]:
    return [replace(s, label=s.label + offset, dataset=name) for s in samples]


def relabel_by_dataset(splits: Splits) -> Splits:
    """The same samples labelled by dataset index (one class per dataset)."""
    names = [name for name, _ in splits.groups]
    relabel = {role: [replace(s, label=names.index(s.dataset)) for s in splits.samples(role)] for role in ROLES}
    source = DatasetSource(splits.source.name + " (which dataset)", names, relabel, ROLES, splits.source.problems)
    return Splits(source, relabel["train"], relabel["val"], relabel["test"], splits.names,
                  [(name, 1) for name in names])


def merge_joint(parts: Sequence[tuple[str, Splits]], by_dataset: bool = False) -> Splits:
    """The prepared splits of every source, ``(dataset name, splits)`` in order, as one label space
    (offsets in order); ``by_dataset``: labelled by dataset instead (``data.joint_target=dataset``)."""
    merged: dict[str, list[Sample]] = {role: [] for role in ROLES}
    classes: list[str] = []
    problems: list[str] = []
    for name, part in parts:
        for role in ROLES:
            merged[role] += _shifted(part.samples(role), len(classes), name)
        classes += [f"{name}/{c}" for c in part.classes]
        problems += [f"{name}: {p}" for p in part.source.problems]
    ranks = dict.fromkeys(rank for _, part in parts for rank in part.source.taxonomy)
    taxonomy = {"dataset": [name for name, part in parts for _ in part.classes]}
    for rank in ranks:  # a rank some datasets lack (e.g. iNat's genus next to CUB) is "" for their classes
        if rank != "dataset":
            taxonomy[rank] = [v for _, part in parts
                              for v in part.source.taxonomy.get(rank, [""] * len(part.classes))]
    names = [name for name, _ in parts]
    source = DatasetSource("+".join(names), classes, merged, ROLES, problems, taxonomy)
    described = {role: "; ".join(f"{name}: {part.names[role]}" for name, part in parts) for role in ROLES}
    splits = Splits(source, merged["train"], merged["val"], merged["test"], described,
                    [(name, len(part.classes)) for name, part in parts])
    return relabel_by_dataset(splits) if by_dataset else splits


def dataset_index(labels: torch.Tensor, groups: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each joint label's dataset (``groups`` = class counts in label order) and that dataset's offset
    (its first joint label)."""
    starts = torch.tensor([0] + list(groups[:-1]), device=labels.device).cumsum(0)
    index = torch.bucketize(labels, starts, right=True) - 1
    return index, starts[index]
