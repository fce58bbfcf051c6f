"""Joint training data (the erudite model): one label space over several datasets, balanced batches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import tiny_config, write_folder_dataset

from fgvc.config import build_config
from fgvc.data.joint import source_config
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.samplers import BalancedSampler
from fgvc.data.splits import prepare_splits
from fgvc.data.synthetic import SynthOptions, write_multidomain
from fgvc.data.verify import verify
from fgvc.errors import ConfigError, FgvcError

SIZES = [23, 7, 3]  # samples per dataset for the sampler's unit tests (interleaved below)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """Three datasets in their real formats, of different sizes and class counts (train 24 / 18 / 8)."""
    out = tmp_path_factory.mktemp("joint")
    small = {"size": 16, "jpeg_quality": 80}
    write_multidomain(out, SynthOptions(domains=("cub",), domain_genera=2, domain_species_per_genus=2,
                                        domain_images_per_class=12, **small))
    write_multidomain(out, SynthOptions(domains=("aircraft",), domain_genera=3, domain_species_per_genus=2,
                                        domain_images_per_class=6, **small))
    write_folder_dataset(out / "folder", classes=2, train_per_class=5, test_per_class=2, size=16)
    return {"cub": out / "cub", "aircraft": out / "aircraft", "folder": out / "folder"}


def joint_sources(roots: dict[str, Path], *formats: str) -> list[dict]:
    return [{"format": f, "root": str(roots[f])} for f in formats or ("cub", "aircraft", "folder")]


def data_config(roots, *formats: str, **data):
    tree = {"format": "folder", "joint": joint_sources(roots, *formats), "val_fraction": 0.25,
            "image_size": 16, "batch_size": 6, "num_workers": 0} | data
    return build_config({"data": tree}).data


@pytest.fixture(scope="module")
def splits(roots):
    return prepare_splits(data_config(roots))


def offsets(groups: list[tuple[str, int]]) -> dict[str, range]:
    out, start = {}, 0
    for name, count in groups:
        out[name], start = range(start, start + count), start + count
    return out


def test_labels_are_offset_and_class_names_prefixed(roots, splits):
    cfg = data_config(roots)
    assert splits.groups == [("cub", 4), ("aircraft", 6), ("folder", 2)]
    assert splits.source.name == "cub+aircraft+folder" and len(splits.classes) == 12
    assert splits.source.taxonomy["dataset"] == ["cub"] * 4 + ["aircraft"] * 6 + ["folder"] * 2
    owned = offsets(splits.groups)
    for source in cfg.joint:  # each split is the single-dataset split, shifted into its own label range
        single = prepare_splits(source_config(cfg, source))
        name, first = source.dataset_name, owned[source.dataset_name].start
        assert splits.classes[owned[name].start:owned[name].stop] == [f"{name}/{c}" for c in single.classes]
        for role in ("train", "val", "test"):
            joint = [(s.path, s.label) for s in splits.samples(role) if s.dataset == name]
            assert joint == [(s.path, s.label + first) for s in single.samples(role)]
            assert all(s.label in owned[s.dataset] for s in splits.samples(role))
    assert [sum(s.dataset == n for s in splits.train) for n, _ in splits.groups] == [24, 18, 8]
    assert splits.names["val"].startswith("cub: stratified hold-out") and "; aircraft: " in splits.names["val"]


def test_single_dataset_keeps_one_group_and_verify_reads_joint(roots, folder_dataset):
    single = prepare_splits(build_config({"data": {"format": "folder", "root": str(folder_dataset)}}).data)
    assert single.groups == [("folder", 3)]
    summary = verify(data_config(roots, "cub", "folder"), check_images=False, progress=False)
    assert summary["dataset"] == "cub+folder" and summary["classes"] == 6


def datasets_of(sizes: list[int]) -> list[int]:
    """Dataset index per sample, interleaved so that members are not contiguous index ranges."""
    out = [d for round_ in range(max(sizes)) for d, n in enumerate(sizes) if round_ < n]
    assert [out.count(d) for d in range(len(sizes))] == sizes
    return out


def stream(keys: list[tuple[int, int]], dataset: list[int], d: int) -> list[int]:
    return [i for i, _ in keys if dataset[i] == d]


def test_every_block_is_balanced_and_the_largest_dataset_sets_the_length():
    dataset = datasets_of(SIZES)
    sampler = BalancedSampler(dataset, per_dataset=2, seed=0)
    keys = list(sampler)
    assert len(keys) == len(sampler) == math.ceil(23 / 2) * 2 * 3
    for b in range(0, len(keys), 6):  # dataset-major blocks of per_dataset * num_datasets
        assert [dataset[i] for i, _ in keys[b:b + 6]] == [0, 0, 1, 1, 2, 2]
    assert set(stream(keys, dataset, 0)) == {i for i, d in enumerate(dataset) if d == 0}
    assert len({seed for _, seed in keys}) == len(keys)


def test_small_datasets_cycle_through_fresh_permutations_without_repeats():
    dataset = datasets_of(SIZES)
    keys = list(BalancedSampler(dataset, per_dataset=2, seed=5))
    for d, n in enumerate(SIZES):
        drawn = stream(keys, dataset, d)
        members = sorted(i for i, x in enumerate(dataset) if x == d)
        cycles = [drawn[c:c + n] for c in range(0, len(drawn), n)]
        assert all(sorted(c) == members for c in cycles[:-1]) and len(set(cycles[-1])) == len(cycles[-1])
        if d == 2:  # 8 cycles of 3: at least two different orders
            assert len({tuple(c) for c in cycles[:-1]}) > 1


def test_same_seed_and_epoch_same_keys_and_each_epoch_differs():
    dataset = datasets_of(SIZES)
    a, b = BalancedSampler(dataset, 2, seed=3), BalancedSampler(dataset, 2, seed=3)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert [i for i, _ in a] != [i for i, _ in first] and list(BalancedSampler(dataset, 2, seed=4)) != first


def test_resume_from_mid_epoch_start_continues_exactly():
    dataset = datasets_of(SIZES)
    full = BalancedSampler(dataset, 2, seed=1)
    full.set_epoch(2)
    keys = list(full)
    resumed = BalancedSampler(dataset, 2, seed=1)
    resumed.set_epoch(2, start=17)  # mid-block, as after a kill between checkpoints
    assert list(resumed) == keys[17:] and len(resumed) == len(keys) - 17


def test_two_ranks_are_balanced_and_disjoint_within_each_pass():
    dataset = datasets_of(SIZES)
    p, w = 2, 2
    ranks = [list(BalancedSampler(dataset, p, seed=0, rank=r, world_size=w)) for r in range(w)]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(23 / (p * w)) * p * 3
    for keys in ranks:
        for b in range(0, len(keys), 6):
            assert sorted(dataset[i] for i, _ in keys[b:b + 6]) == [0, 0, 1, 1, 2, 2]
    assert not {s for _, s in ranks[0]} & {s for _, s in ranks[1]}
    for d, n in enumerate(SIZES):
        per_rank = [stream(keys, dataset, d) for keys in ranks]
        # the global stream: row by row, rank 0's share then rank 1's
        merged = [i for row in range(len(per_rank[0]) // p) for r in range(w) for i in per_rank[r][row * p:row * p + p]]
        for c in range(0, len(merged), n):
            assert len(set(merged[c:c + n])) == len(merged[c:c + n])  # no sample twice within a pass
        assert set(merged[:n]) == {i for i, x in enumerate(dataset) if x == d}


@pytest.mark.parametrize("workers", [0, 2])
def test_each_loader_batch_holds_the_same_number_of_images_per_dataset(roots, splits, workers):
    cfg = data_config(roots, num_workers=workers)
    loader = make_loader(cfg, make_dataset(cfg, splits.train, train=True), train=True, seed=0)
    owned = offsets(splits.groups)
    batches = list(loader)
    assert len(batches) == len(loader) == math.ceil(24 / 2)  # cub's 24 training images, 2 per batch
    for batch in batches:
        labels = batch["label"].tolist()
        assert [sum(y in owned[name] for y in labels) for name, _ in splits.groups] == [2, 2, 2]
    seen = {i for batch in batches for i in batch["index"].tolist()}
    assert seen == set(range(len(splits.train)))  # every sample of every dataset came up this epoch
    val = make_loader(cfg, make_dataset(cfg, splits.val, train=False), train=False)
    assert [i for batch in val for i in batch["index"].tolist()] == list(range(len(splits.val)))


@pytest.mark.parametrize("tree, words", [
    ({"joint": [{"format": "folder", "root": "a"}]}, ["data.joint needs at least 2 datasets (got 1)"]),
    ({"joint": [{"format": "folder", "root": "a"}, {"format": "folder", "root": "b"}]},
     ["two datasets named 'folder'", "data.joint[i].name"]),
    ({"joint": [{"format": "cub", "root": "a"}, {"format": "folder", "root": ""}]}, ["data.joint.1.root"]),
    ({"joint": [{"format": "cub", "root": "a"}, {"root": "b"}]}, ["data.joint.1.format", "required"]),
    ({"format": "cub"}, ["data.root is required"]),
])
def test_joint_config_errors_are_one_line_naming_the_key(tree, words):
    with pytest.raises(ConfigError) as info:
        build_config({"data": tree})
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


def test_named_sources_of_one_format_and_no_root_are_accepted():
    data = build_config({"data": {"joint": [{"format": "folder", "root": "a", "name": "x"},
                                            {"format": "folder", "root": "b", "name": "y"}]}}).data
    assert [s.dataset_name for s in data.joint] == ["x", "y"] and data.root == ""


def test_batch_size_must_divide_among_the_datasets(roots, splits):
    cfg = data_config(roots, batch_size=8)
    with pytest.raises(FgvcError) as info:
        make_loader(cfg, make_dataset(cfg, splits.train, train=True), train=True)
    assert "data.batch_size (8)" in str(info.value) and "\n" not in str(info.value)
    make_loader(cfg, make_dataset(cfg, splits.val, train=False), train=False)  # evaluation is not batched by dataset


def test_trainer_runs_an_epoch_on_joint_data(roots, tmp_path):
    from fgvc.engine.trainer import Trainer

    cfg = tiny_config(roots["folder"], tmp_path, schedule={"epochs": 1, "warmup_epochs": 0},
                      data={"joint": joint_sources(roots, "cub", "folder"), "batch_size": 8})
    trainer = Trainer(cfg)
    assert trainer.num_classes == 6 and isinstance(trainer.train_loader.sampler, BalancedSampler)
    assert trainer.steps_per_epoch == math.ceil(24 / 4)  # batch 8 = 4 of cub + 4 of folder
    state = trainer.fit()
    assert state.epoch == 1 and state.best_epoch == 0
    assert (tmp_path / "tiny" / "checkpoints" / "best.pt").is_file()
