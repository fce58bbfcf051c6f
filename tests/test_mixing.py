"""Recursive mosaic and jigsaw: checked on images whose pixel values are unique ids, so every output
pixel says exactly which input pixel it came from."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from fgvc.data.mixing import jigsaw, recursive_mosaic

SIZES = [(8, 8), (37, 53), (53, 37), (16, 12), (5, 3)]


def ids(b: int, h: int, w: int, c: int = 2) -> torch.Tensor:
    """[b, c, h, w] int64, every value unique across the batch and channels."""
    return torch.arange(b * c * h * w).view(b, c, h, w)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_own_pixel_permutation(out: torch.Tensor, inp: torch.Tensor, id_pixels: bool = True) -> None:
    """Per sample: the same multiset of values; for id images also the same permutation on every channel."""
    assert out.shape == inp.shape and out.dtype == inp.dtype
    b = inp.shape[0]
    assert torch.equal(out.view(b, -1).sort(dim=1).values, inp.reshape(b, -1).sort(dim=1).values)
    if id_pixels:
        assert torch.equal(out - out[:, :1], inp - inp[:, :1])  # channel c = channel 0 + c*h*w, kept


def same_pixels(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.flatten().sort().values, b.flatten().sort().values)


def grid(t: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The n×n floor-size patches of a 2-D tensor, row-major."""
    ph, pw = t.shape[0] // n, t.shape[1] // n
    return [t[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] for i in range(n) for j in range(n)]


def check_grid_shuffle(out: torch.Tensor, inp: torch.Tensor, n: int) -> tuple[list[int], list[int]]:
    """Border (last H mod n rows, W mod n cols) untouched; patches a bijection of the input's patches.

    Returns the source patch of each output patch and the output patches that are not a pixel-exact
    copy of their source (they hold the same pixels rearranged).
    """
    h, w = inp.shape
    gh, gw = n * (h // n), n * (w // n)
    assert torch.equal(out[gh:], inp[gh:]) and torch.equal(out[:, gw:], inp[:, gw:])
    outs, ins = grid(out, n), grid(inp, n)
    sources = [next(k for k, q in enumerate(ins) if same_pixels(o, q)) for o in outs]
    assert sorted(sources) == list(range(n * n))
    return sources, [k for k, (o, s) in enumerate(zip(outs, sources)) if not torch.equal(o, ins[s])]


def check_mosaic(out: torch.Tensor, inp: torch.Tensor, r: int) -> list[int]:
    """Assert ``out`` (2-D ids) is an r-level recursive mosaic of ``inp``; return the output quadrants
    (one per level after the first) that were shuffled further, as far as visible: a nested level
    whose permutation happens to be the identity leaves its quadrant a whole copy and ends the path."""
    h, w = inp.shape
    if r == 0 or h < 2 or w < 2:
        assert torch.equal(out, inp)
        return []
    sources, rearranged = check_grid_shuffle(out, inp, 2)
    assert len(rearranged) <= 1, "only one quadrant per level may be shuffled further"
    if r == 1:
        assert not rearranged
    if not rearranged:
        return []
    k = rearranged[0]
    return [k] + check_mosaic(grid(out, 2)[k], grid(inp, 2)[sources[k]], r - 1)


# ----------------------------------------------------------------------------- recursive mosaic


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_mosaic_is_a_per_sample_permutation_of_its_own_pixels(h, w, r):
    x = ids(4, h, w, c=3)
    assert_own_pixel_permutation(recursive_mosaic(x, r, gen(r)), x)


@pytest.mark.parametrize("h,w", [(8, 8), (37, 53), (16, 12)])
def test_mosaic_r1_quadrants_are_whole_input_quadrants(h, w):
    x = ids(16, h, w, c=1)
    out = recursive_mosaic(x, 1, gen(0))
    orders = set()
    for b in range(16):
        sources, rearranged = check_grid_shuffle(out[b, 0], x[b, 0], 2)
        assert not rearranged
        orders.add(tuple(sources))
    assert len(orders) > 1


def test_mosaic_r2_shuffles_inside_exactly_one_output_quadrant():
    x = ids(64, 8, 8, c=1)
    out = recursive_mosaic(x, 2, gen(1))
    depths, positions = Counter(), Counter()
    for b in range(64):
        path = check_mosaic(out[b, 0], x[b, 0], 2)
        depths[len(path)] += 1
        positions.update(path[:1])
    # a nested shuffle is invisible only when its permutation is the identity (1 in 24)
    assert depths[1] >= 56 and depths[1] + depths[0] == 64
    assert set(positions) == {0, 1, 2, 3}  # the nested quadrant is chosen at random


@pytest.mark.parametrize("h,w", [(16, 16), (37, 53), (64, 48)])
def test_mosaic_r3_nests_three_levels(h, w):
    x = ids(24, h, w, c=1)
    out = recursive_mosaic(x, 3, gen(2))
    paths = [check_mosaic(out[b, 0], x[b, 0], 3) for b in range(24)]
    assert sum(len(p) == 2 for p in paths) >= 18


def test_mosaic_odd_border_stays_in_place_at_every_level():
    x = ids(8, 37, 53, c=1)  # 37 -> 18 -> 9 -> 4 rows: level 1 and 3 leave a row; 53 -> 26 -> 13 -> 6 cols
    out = recursive_mosaic(x, 3, gen(3))
    assert torch.equal(out[..., 36, :], x[..., 36, :]) and torch.equal(out[..., :, 52], x[..., :, 52])
    for b in range(8):
        check_mosaic(out[b, 0], x[b, 0], 3)  # checks each nested region's own border too


def test_mosaic_identical_inputs_get_different_mosaics():
    x = ids(1, 16, 16, c=3).expand(16, -1, -1, -1).contiguous()
    out = recursive_mosaic(x, 3, gen(4))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16


def test_mosaic_permutations_are_uniform():
    x = ids(1, 2, 2, c=1).expand(2400, -1, -1, -1)
    counts = Counter(tuple(o.flatten().tolist()) for o in recursive_mosaic(x, 1, gen(5)))
    assert len(counts) == 24 and min(counts.values()) > 60 and max(counts.values()) < 140


def test_mosaic_seed_determinism():
    x = ids(8, 20, 20)
    assert torch.equal(recursive_mosaic(x, 3, gen(7)), recursive_mosaic(x, 3, gen(7)))
    assert not torch.equal(recursive_mosaic(x, 3, gen(7)), recursive_mosaic(x, 3, gen(8)))
    torch.manual_seed(11)
    a = recursive_mosaic(x, 3)
    torch.manual_seed(11)
    assert torch.equal(a, recursive_mosaic(x, 3))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("h,w", [(37, 53), (32, 48)])  # maps of single pixels / of runs of 6 pixels
def test_mosaic_keeps_dtype_and_the_same_seed_moves_the_same_pixels(dtype, h, w):
    x = torch.randint(0, 256, (4, 3, h, w), dtype=torch.uint8)
    ref = ids(4, h, w, c=1)
    out = recursive_mosaic(x.to(dtype), 3, gen(9))
    where = recursive_mosaic(ref, 3, gen(9)) - ref[:, :, :1, :1]  # per-sample source pixel index
    expected = x.reshape(4, 3, -1).gather(2, where.reshape(4, 1, -1).expand(4, 3, -1)).view_as(x)
    assert out.dtype == dtype and torch.equal(out, expected.to(dtype))


def test_mosaic_single_image_and_r0():
    x = ids(1, 37, 53, c=3)[0]
    out = recursive_mosaic(x, 2, gen(0))
    assert out.shape == x.shape
    assert_own_pixel_permutation(out[None], x[None])
    same = recursive_mosaic(x, 0)
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()
    batch = ids(3, 9, 9)
    assert torch.equal(recursive_mosaic(batch, 0), batch)


def test_mosaic_tiny_images_run_out_of_levels_gracefully():
    for h, w in [(1, 1), (1, 7), (3, 3), (2, 2)]:
        x = ids(2, h, w)
        assert_own_pixel_permutation(recursive_mosaic(x, 5, gen(0)), x)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        recursive_mosaic(torch.zeros(8, 8), 1)
    with pytest.raises(ValueError):
        recursive_mosaic(torch.zeros(1, 3, 8, 8), -1)
    with pytest.raises(ValueError):
        jigsaw(torch.zeros(1, 3, 8, 8), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_seed_same_result_on_gpu():
    x = ids(4, 37, 53)
    assert torch.equal(recursive_mosaic(x.cuda(), 3, gen(1)).cpu(), recursive_mosaic(x, 3, gen(1)))
    assert torch.equal(jigsaw(x.cuda(), 4, gen(1)).cpu(), jigsaw(x, 4, gen(1)))


# ----------------------------------------------------------------------------- jigsaw


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_jigsaw_patches_are_whole_input_patches(h, w, n):
    x = ids(4, h, w, c=3)
    out = jigsaw(x, n, gen(n))
    assert_own_pixel_permutation(out, x)
    if h >= n and w >= n:
        for b in range(4):
            _, rearranged = check_grid_shuffle(out[b, 0], x[b, 0], n)
            assert not rearranged


def test_jigsaw_border_rule():
    x = ids(6, 37, 53, c=1)  # n=4: 9×13 patches, row 36 and column 52 stay
    out = jigsaw(x, 4, gen(0))
    assert torch.equal(out[..., 36:, :], x[..., 36:, :]) and torch.equal(out[..., 52:], x[..., 52:])
    assert not torch.equal(out[..., :36, :52], x[..., :36, :52])


def test_jigsaw_n1_and_too_small_are_identity():
    x = ids(3, 10, 10)
    assert torch.equal(jigsaw(x, 1, gen(0)), x)
    assert torch.equal(jigsaw(ids(2, 3, 9), 4, gen(0)), ids(2, 3, 9))


def test_jigsaw_per_sample_and_deterministic():
    x = ids(1, 16, 16, c=3).expand(16, -1, -1, -1).contiguous()
    out = jigsaw(x, 4, gen(3))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16
    assert torch.equal(out, jigsaw(x, 4, gen(3))) and not torch.equal(out, jigsaw(x, 4, gen(4)))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_jigsaw_dtype_and_single_image(dtype):
    x = torch.randint(0, 256, (3, 40, 24), dtype=torch.uint8).to(dtype)
    out = jigsaw(x, 8, gen(0))
    assert out.shape == x.shape and out.dtype == dtype
    assert_own_pixel_permutation(out[None], x[None], id_pixels=False)


# --- Mixup / CutMix need pairs: an odd batch is refused up front, or counted and logged -------------------

def _mixing_method(tmp_path, batch_size: int, **sections):
    from conftest import tiny_config

    from fgvc.methods import build_method

    cfg = tiny_config(tmp_path, tmp_path / "runs", data={"batch_size": batch_size}, **sections)
    return build_method(cfg, num_classes=3)


@pytest.mark.parametrize("sections", [{"train": {"mixup_alpha": 0.2}}, {"train": {"cutmix_alpha": 1.0}},
                                      {"model": {"head": "multi_stage"},
                                       "method": {"name": "progressive", "augment": "mixup"}}])
def test_mixing_refuses_an_odd_batch_size(tmp_path, sections):
    from fgvc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.batch_size must be even \(got 5\)"):
        _mixing_method(tmp_path, 5, **sections)


def test_an_odd_last_batch_trains_unmixed_and_is_counted(tmp_path, caplog):
    method = _mixing_method(tmp_path, 4, train={"mixup_alpha": 0.4})
    seen = []

    def model(images, meta):
        seen.append(images)
        return torch.zeros(len(images), 3, requires_grad=True)

    even = {"image": torch.rand(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 0]), "meta": torch.zeros(4, 0)}
    odd = {"image": torch.rand(3, 3, 8, 8), "label": torch.tensor([0, 1, 2]), "meta": torch.zeros(3, 0)}
    with caplog.at_level("WARNING"):
        method.training_loss(model, even)
        method.training_loss(model, odd)
    assert not torch.equal(seen[0], even["image"])  # mixed with its partner
    assert torch.equal(seen[1], odd["image"])  # unmixed, and said so
    assert method.pairing.unmixed == 1
    assert "a batch of 3 images (odd: a stream's last batch) trains unmixed (1 so far)" in caplog.text
