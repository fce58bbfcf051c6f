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
    """Training shards: disjoint, equal lengths (DDP lockstep), the tail of < world_size left out."""
    shards = [ResumableSampler(10, seed=0, rank=r, world_size=3) for r in range(3)]
    indices = [i for s in shards for i, _ in s]
    assert all(len(s) == len(list(s)) == 3 for s in shards)
    assert len(set(indices)) == 9 and set(indices) <= set(range(10))
    seeds = [seed for s in shards for _, seed in s]
    assert len(set(seeds)) == 9


def test_ranks_deal_the_single_process_order_round_robin():
    """W ranks with batch B draw, step by step, the single-process batches of W*B, augmented alike."""
    single = list(ResumableSampler(24, seed=5))
    ranks = [list(ResumableSampler(24, seed=5, rank=r, world_size=2)) for r in range(2)]
    for step in range(3):  # per-rank batch 4, global batch 8
        together = ranks[0][4 * step:4 * step + 4] + ranks[1][4 * step:4 * step + 4]
        assert sorted(together) == sorted(single[8 * step:8 * step + 8])


def test_resume_on_another_world_size_draws_each_remaining_sample_once():
    """Positions count samples of all ranks: 2 steps of batch 4 on one process, then two ranks."""
    epoch = ResumableSampler(24, seed=1)
    epoch.set_epoch(3)
    single = list(epoch)
    resumed = []
    for r in range(2):
        s = ResumableSampler(24, seed=1, rank=r, world_size=2)
        s.set_epoch(3, start=8)
        resumed += list(s)
    assert sorted(resumed) == sorted(single[8:])  # the same samples with the same augmentation seeds


def test_evaluation_shards_cover_every_sample_once_without_padding():
    shards = [ResumableSampler(7, seed=0, shuffle=False, rank=r, world_size=2) for r in range(2)]
    assert [[i for i, _ in s] for s in shards] == [[0, 2, 4, 6], [1, 3, 5]]
    assert [len(s) for s in shards] == [4, 3]
