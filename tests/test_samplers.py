from fgvc.data.samplers import ResumableSampler


def test_same_seed_same_order_and_new_order_each_epoch():
    a, b = ResumableSampler(50, seed=3), ResumableSampler(50, seed=3)
    assert list(a) == list(b)
    first = [i for i, _ in a]
    a.set_epoch(1)
    assert sorted(first) == list(range(50)) and [i for i, _ in a] != first


def test_resume_position_continues_the_same_sequence():
    full = ResumableSampler(40, seed=1)
    full.set_epoch(2)
    items = list(full)
    resumed = ResumableSampler(40, seed=1)
    resumed.set_epoch(2, start=16)
    assert list(resumed) == items[16:] and len(resumed) == 24


def test_augmentation_seeds_are_distinct_per_sample_and_epoch():
    s = ResumableSampler(30, seed=0)
    seeds0 = [seed for _, seed in s]
    s.set_epoch(1)
    seeds1 = [seed for _, seed in s]
    assert len(set(seeds0)) == 30 and not set(seeds0) & set(seeds1)


def test_ranks_partition_the_epoch():
    shards = [ResumableSampler(10, seed=0, rank=r, world_size=3) for r in range(3)]
    indices = [i for s in shards for i, _ in s]
    assert all(len(s) == 4 for s in shards)  # padded by wrapping, like DistributedSampler
    assert set(indices) == set(range(10)) and len(indices) == 12
    seeds = [seed for s in shards for _, seed in s]
    assert len(set(seeds)) == 12
