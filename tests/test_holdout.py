"""The seeded stratified hold-out used for model selection when a dataset has no val split."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fgvc.data.holdout import stratified_holdout
from fgvc.data.records import Sample

SIZES = {0: 1, 1: 2, 2: 5, 3: 10, 4: 50}


def make_samples() -> list[Sample]:
    return [Sample(f"/d/c{label}/{i}.jpg", label, id=f"{label}-{i}")
            for label, n in SIZES.items() for i in range(n)]


def test_split_sizes_per_class():
    samples = make_samples()
    train, val = stratified_holdout(samples, 0.2, seed=0)
    n_train, n_val = Counter(s.label for s in train), Counter(s.label for s in val)
    for label, n in SIZES.items():
        assert n_val[label] == min(n - 1, int(n * 0.2 + 0.5))
        assert n_train[label] + n_val[label] == n and n_train[label] >= 1
    assert n_val[0] == 0  # a single sample stays in train
    assert n_val[4] == 10


def test_partition_keeps_input_order():
    samples = make_samples()
    train, val = stratified_holdout(samples, 0.3, seed=1)
    assert sorted(train + val, key=samples.index) == samples
    assert not {s.id for s in train} & {s.id for s in val}
    assert train == [s for s in samples if s in train] and val == [s for s in samples if s in val]


def test_deterministic_and_seeded():
    samples = make_samples()
    assert stratified_holdout(samples, 0.2, seed=3) == stratified_holdout(samples, 0.2, seed=3)
    assert stratified_holdout(samples, 0.2, seed=3)[1] != stratified_holdout(samples, 0.2, seed=4)[1]


def test_independent_of_input_and_class_order():
    samples = make_samples()
    shuffled = samples[:]
    random.Random(0).shuffle(shuffled)
    _, val_a = stratified_holdout(samples, 0.2, seed=7)
    _, val_b = stratified_holdout(shuffled, 0.2, seed=7)
    assert {s.id for s in val_a} == {s.id for s in val_b}
    # Dropping a whole class does not change which samples the other classes hold out.
    _, val_c = stratified_holdout([s for s in samples if s.label != 3], 0.2, seed=7)
    assert {s.id for s in val_c} == {s.id for s in val_a if s.label != 3}


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_fraction_must_be_a_proper_fraction(fraction):
    with pytest.raises(ValueError):
        stratified_holdout(make_samples(), fraction, seed=0)
