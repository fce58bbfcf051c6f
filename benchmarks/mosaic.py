"""Recursive mosaic speed: fgvc's vectorised index-map gather vs a patch-by-patch reference.

The reference follows the RMG-PMSI paper's description literally, one sample at a time: for each of
the r levels, copy out the four quadrants of the current region, write them back in a random order
with tensor slicing, then descend into one of the new quadrants (same remainder rule as fgvc: an odd
last row/column of a region stays put). fgvc builds one per-sample index map and gathers once.
Both run on the same batch in the same process, alternating, for float32 and uint8; the median of
the repeats is reported, and both outputs are checked to be per-sample permutations of the input's
own pixels. At 448 px every quadrant edge falls on a multiple of 56 columns, so fgvc's map moves runs
of 56 pixels; the odd 447 px (quadrants 223, 111, 55 wide) forces a map of single pixels, the worst case.

    python benchmarks/mosaic.py [--batch 32] [--sizes 448 447] [--r 3] [--repeats 9] [--device cpu]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from functools import partial

import torch

from fgvc.data.mixing import recursive_mosaic
from fgvc.engine.report import markdown_table


def patch_by_patch_mosaic(images: torch.Tensor, r: int, rng: random.Random) -> torch.Tensor:
    """The straightforward implementation: Python loops over samples and levels, slice copies."""
    out = images.clone()
    height, width = images.shape[-2:]
    for b in range(images.shape[0]):
        top, left, h, w = 0, 0, height, width
        for _ in range(r):
            qh, qw = h // 2, w // 2
            if qh == 0 or qw == 0:
                break
            corners = [(top + i * qh, left + j * qw) for i in (0, 1) for j in (0, 1)]
            quads = [out[b, :, y:y + qh, x:x + qw].clone() for y, x in corners]
            for (y, x), k in zip(corners, rng.sample(range(4), 4)):
                out[b, :, y:y + qh, x:x + qw] = quads[k]
            top, left = corners[rng.randrange(4)]
            h, w = qh, qw
    return out


def assert_same_pixels(images: torch.Tensor, *outputs: torch.Tensor) -> None:
    """Every output holds, per sample, exactly the input sample's pixel values."""
    want = images.flatten(1).sort(dim=1).values
    for out in outputs:
        assert out.dtype == images.dtype and torch.equal(out.flatten(1).sort(dim=1).values, want)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 447])
    parser.add_argument("--r", type=int, default=3, help="mosaic levels")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    batches = {}
    for size in args.sizes:
        floats = torch.rand(args.batch, 3, size, size, generator=gen).to(device)
        batches[size, "float32"], batches[size, "uint8"] = floats, (floats * 255).to(torch.uint8)
    times = {(name, impl): [] for name in batches for impl in ("reference", "fgvc")}
    for name, x in batches.items():  # warm-up (allocator, kernels) and the correctness check
        assert_same_pixels(x, patch_by_patch_mosaic(x, args.r, rng), recursive_mosaic(x, args.r, gen))
    for i in range(args.repeats):  # alternate dtypes and which implementation goes first
        for name, x in batches.items():
            runs = [("reference", partial(patch_by_patch_mosaic, x, args.r, rng)),
                    ("fgvc", partial(recursive_mosaic, x, args.r, gen))]
            for impl, fn in runs[::-1] if i % 2 else runs:
                times[name, impl].append(timed(fn, device))
    rows = []
    for size, dtype in batches:
        ref, ours = (statistics.median(times[(size, dtype), impl]) for impl in ("reference", "fgvc"))
        rows.append({"image": f"3×{size}×{size}", "dtype": dtype, "patch-by-patch ms/batch": ref,
                     "fgvc ms/batch": ours, "speed-up": f"{ref / ours:.2f}×"})
    print(f"recursive_mosaic, batch {args.batch}, r={args.r}, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
