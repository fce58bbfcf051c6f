"""Patch-shuffling augmentations: PMG's jigsaw and RMG-PMSI's recursive mosaic, per sample and vectorised.

Both are permutations of each image's own pixels, so both are built the same way: a per-sample flat
index map ``src`` (output position -> input position, int64) is composed from patch permutations,
then applied to all channels at once by one indexing op. No Python loop runs over samples or patches,
any dtype (uint8 included) and device work, and the image data is read and written exactly once.

The map's unit is a *run*: ``run`` consecutive pixels of a row, where ``run`` is the gcd of the image
width and every patch width involved, so no patch edge ever falls inside a run (56 for 448 px and
r = 3 or n = 8; 1, i.e. single pixels, for widths such as 53). Whole runs move together, so the map
has H·W/run entries and applying it copies contiguous rows of memory instead of single pixels.

A patch permutation moves each patch by a constant offset, so the map is stored as the identity plus
per-patch displacements. That makes nested mosaic levels cheap to compose: level l+1 reshuffles the
inside of one *output* quadrant of level l, which level l moves as a block by one constant offset,
so the composed map is simply the sum of every level's displacement at that position.

Random draws come from ``generator`` on its own device (the default CPU generator when None) and are
moved to the images' device afterwards, so a CPU generator and seed give the same result on any device.

``release_order=True`` reproduces how PMG's and RMG-PMSI's released generators draw: one order for the
whole batch, built by swapping the first patch with every patch in a random sequence. That sequence
of swaps is a single cycle through all patches, so no patch keeps its place (a uniform order leaves
one patch in place on average, and the whole 2×2 image with probability 1/24).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from fgvc.errors import ConfigError

log = logging.getLogger(__name__)


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _random_permutations(batch: int, k: int, generator: torch.Generator | None) -> Tensor:
    """``[batch, k]`` independent uniform permutations; float64 keys so ties are practically impossible."""
    keys = torch.rand(batch, k, generator=generator, device=_draw_device(generator), dtype=torch.float64)
    return keys.argsort(dim=1)


def _grid_shift(perm: Tensor, n: int, ph: int, pw: int, width: int) -> Tensor:
    """Flat offset, per sample and output patch, from the patch to the patch whose pixels it receives.

    Output patch k (row-major in an n×n grid of ph×pw patches) shows patch ``perm[b, k]``. Shaped
    [B, n, 1, n, 1] to broadcast over the grid viewed as [B, n, ph, n, pw]. Here and below, widths
    and column offsets are in runs, heights and row offsets in pixel rows.
    """
    k = torch.arange(n * n, device=perm.device)
    dy = (perm // n - k // n) * ph
    dx = (perm % n - k % n) * pw
    return (dy * width + dx).view(-1, n, 1, n, 1)


def _release_orders(count: int, k: int, generator: torch.Generator | None) -> Tensor:
    """``[count, k]`` patch orders as the releases' swap loops make them.

    Their loop swaps patch 0 with ``l[0]``, ``l[1]``, … for a shuffled list ``l`` of all k patches. After
    it, patch 0 shows the last non-zero entry of ``l``, the first non-zero entry shows patch 0 and each
    later one shows the one before it: with ``o = [0, non-zero entries of l in order]``,
    ``order[o[i]] = o[i - 1]`` (indices mod k).
    """
    shuffled = _random_permutations(count, k, generator)
    rest = shuffled[shuffled != 0].view(count, k - 1)
    cycle = torch.cat([torch.zeros(count, 1, dtype=torch.long, device=rest.device), rest], 1)
    return torch.empty_like(cycle).scatter_(1, cycle, cycle.roll(1, dims=1))


def _shuffled_identity(height: int, width: int, n: int, ph: int, pw: int, perm: Tensor) -> Tensor:
    """Index map [B, height*width]: the identity with the top-left n×n grid of ph×pw patches permuted.

    Written in one pass (identity plus broadcast shift straight into the grid's strided view); what
    lies right of and below the grid keeps its own index.
    """
    b, device = perm.shape[0], perm.device
    base = torch.arange(height * width, device=device).view(height, width)
    src = torch.empty(b, height, width, dtype=torch.long, device=device)
    gh, gw = n * ph, n * pw
    grid = src[:, :gh, :gw].view(b, n, ph, n, pw)
    torch.add(base[:gh, :gw].view(1, n, ph, n, pw), _grid_shift(perm, n, ph, pw, width), out=grid)
    src[:, gh:] = base[gh:]
    src[:, :gh, gw:] = base[:gh, gw:]
    return src.view(b, -1)


def _shift_quadrants(src: Tensor, width: int, top: Tensor, left: Tensor, qh: int, qw: int,
                     perm: Tensor) -> None:
    """Compose, in place, a 2×2 shuffle of qh×qw quadrants whose grid starts at (top[b], left[b]).

    Valid only when that grid lies inside one patch the map already moves as a block (see the module
    docstring); then adding the displacements is exact. Touches only the grid's entries.
    """
    b, device = src.shape[0], src.device
    rows = top[:, None] + torch.arange(2 * qh, device=device)
    cols = left[:, None] + torch.arange(2 * qw, device=device)
    window = (rows[:, :, None] * width + cols[:, None, :]).view(b, -1)
    shift = _grid_shift(perm, 2, qh, qw, width).expand(b, 2, qh, 2, qw).reshape(b, -1)
    src.scatter_add_(1, window, shift)


def _apply_map(images: Tensor, src: Tensor, run: int) -> Tensor:
    """Apply a map of runs ([B, H*W/run]) to every channel: ``out[b, c, p] = images[b, c, src[b, p]]``.

    Runs of several pixels are copied as contiguous rows by one ``index_select``; single pixels use one
    ``gather`` whose index is broadcast over channels (measured 1.5-2× faster than an index_select that
    needs a per-channel index when every run is one pixel).
    """
    b, c, h, w = images.shape
    n = src.shape[1]
    if run == 1:
        return images.reshape(b, c, n).gather(2, src[:, None, :].expand(b, c, n)).view(b, c, h, w)
    rows = torch.arange(b * c, device=src.device).view(b, c, 1) * n + src[:, None, :]
    return images.reshape(b * c * n, run).index_select(0, rows.view(-1)).view(b, c, h, w)


def _as_batch(images: Tensor) -> tuple[Tensor, bool]:
    """Accept one image [C,H,W] (DataLoader workers augment per sample) as a batch of one."""
    if images.dim() == 3:
        return images.unsqueeze(0), True
    if images.dim() != 4:
        raise ValueError(f"expected images [B,C,H,W] or [C,H,W], got shape {tuple(images.shape)}")
    return images, False


def recursive_mosaic(images: Tensor, r: int, generator: torch.Generator | None = None,
                     release_order: bool = False) -> Tensor:
    """Recursive Mosaic Generator G(x, r) of RMG-PMSI (BMVC 2022), a fresh mosaic for every sample.

    Level 1 splits the image into 2×2 quadrants and shuffles them (uniform random permutation); each
    next level picks one of the previous level's *output* quadrants uniformly at random and shuffles
    its 2×2 sub-quadrants the same way; r levels in all. r=0 returns a copy of the input.

    Remainder rule, for every region of size h×w (the image, then the chosen quadrant): the quadrants
    are floor(h/2)×floor(w/2) and tile the region's top-left 2·floor(h/2)×2·floor(w/2) block; the
    region's last row when h is odd and last column when w is odd stay in place. The next level's
    region is one of those quadrants. Levels whose region is under 2 pixels high or wide do nothing.

    The output is, per sample, a permutation of that sample's own pixels (the same on all channels),
    with the input's dtype and device. Accepts [B,C,H,W] or a single image [C,H,W]. With
    ``release_order`` every sample gets the same mosaic, drawn as the release draws it (module docstring).
    """
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    batch, single = _as_batch(images)
    b, _, height, width = batch.shape
    levels, h, w = [], height, width  # quadrant sizes per level: they depend on the level only
    while len(levels) < r and h >= 2 and w >= 2:
        h, w = h // 2, w // 2
        levels.append((h, w))
    if not levels:
        out = batch.clone()
        return out[0] if single else out
    device = batch.device
    draws = 1 if release_order else b  # one mosaic for the batch, or one per sample
    orders = _release_orders if release_order else _random_permutations
    perms = orders(draws * r, 4, generator).view(r, draws, 4).expand(r, b, 4).to(device)
    choices = torch.randint(0, 4, (r, draws), generator=generator, device=_draw_device(generator))
    choices = choices.expand(r, b).to(device)
    run = math.gcd(width, *(qw for _, qw in levels))  # every quadrant edge falls on a multiple
    runs = width // run
    qh, qw = levels[0][0], levels[0][1] // run
    src = _shuffled_identity(height, runs, 2, qh, qw, perms[0])
    top = torch.zeros(b, dtype=torch.long, device=device)
    left = torch.zeros(b, dtype=torch.long, device=device)
    for level in range(1, len(levels)):
        top = top + choices[level - 1] // 2 * qh
        left = left + choices[level - 1] % 2 * qw
        qh, qw = levels[level][0], levels[level][1] // run
        _shift_quadrants(src, runs, top, left, qh, qw, perms[level])
    out = _apply_map(batch, src, run)
    return out[0] if single else out


def jigsaw(images: Tensor, n: int, generator: torch.Generator | None = None,
           release_order: bool = False) -> Tensor:
    """PMG's jigsaw generator (Du et al., ECCV 2020): n×n patches shuffled, a fresh order per sample.

    Remainder rule: patches are floor(H/n)×floor(W/n) and tile the top-left n·floor(H/n)×n·floor(W/n)
    block; the last H mod n rows and W mod n columns stay in place (PMG's 448 px with n = 2, 4, 8
    leave none). n=1, or an image under n pixels high or wide, returns a copy.

    The output is, per sample, a permutation of that sample's own pixels (the same on all channels),
    with the input's dtype and device. Accepts [B,C,H,W] or a single image [C,H,W]. With
    ``release_order`` every sample gets the same order, drawn as the release draws it (module docstring).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    batch, single = _as_batch(images)
    b, _, height, width = batch.shape
    ph, pw = height // n, width // n
    if n == 1 or ph == 0 or pw == 0:
        out = batch.clone()
        return out[0] if single else out
    if release_order:
        perm = _release_orders(1, n * n, generator).expand(b, n * n).to(batch.device)
    else:
        perm = _random_permutations(b, n * n, generator).to(batch.device)
    run = math.gcd(width, pw)
    out = _apply_map(batch, _shuffled_identity(height, width // run, n, ph, pw // run, perm), run)
    return out[0] if single else out


# --- Mixup / CutMix (timm's): images paired within the batch ---------------------------------------------

class PairedMixing:
    """What happens to a batch timm's ``Mixup`` cannot pair.

    timm pairs image i with image B-1-i, so an odd batch has no partner for its middle image and timm
    refuses it. An odd ``data.batch_size`` is therefore refused up front (one line naming the key); a
    training batch can then be odd only as the short last batch of a sharded stream, which trains
    unmixed — counted and logged, never silently.
    """

    def __init__(self, setting: str, batch_size: int):
        if batch_size % 2:
            raise ConfigError(f"{setting} mixes each image with a partner in its batch: data.batch_size must "
                              f"be even (got {batch_size})")
        self.setting = setting
        self.unmixed = 0

    def can_mix(self, batch: int) -> bool:
        """True for an even batch; an odd one is counted and logged (the first, then every 100th)."""
        if batch % 2 == 0:
            return True
        self.unmixed += 1
        if self.unmixed == 1 or self.unmixed % 100 == 0:
            log.warning("%s: a batch of %d images (odd: a stream's last batch) trains unmixed (%d so far)",
                        self.setting, batch, self.unmixed)
        return False


# --- SnapMix (Huang et al., AAAI 2021): boxes of different sizes, label weights from semantic maps --------

def random_box(height: int, width: int, lam: float, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a box covering about ``1 - lam`` of the image, centred at random
    (clipped at the borders), as CutMix and SnapMix draw it."""
    cut = (1.0 - lam) ** 0.5
    h, w = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    return (max(cy - h // 2, 0), min(cy + h // 2, height), max(cx - w // 2, 0), min(cx + w // 2, width))


def paste_box(images: Tensor, partner: Tensor, box: tuple[int, int, int, int],
              partner_box: tuple[int, int, int, int]) -> Tensor:
    """``images`` with ``box`` replaced by ``partner``'s ``partner_box``, resized to fit (bilinear)."""
    top, bottom, left, right = box
    ptop, pbottom, pleft, pright = partner_box
    patch = partner[:, :, ptop:pbottom, pleft:pright].float()
    patch = torch.nn.functional.interpolate(patch, size=(bottom - top, right - left), mode="bilinear",
                                            align_corners=True)
    out = images.clone()
    out[:, :, top:bottom, left:right] = patch.to(images.dtype)
    return out


def box_share(maps: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """Per sample, the share of a non-negative map ``[B, H, W]`` inside ``box`` (NaN for an all-zero map)."""
    top, bottom, left, right = box
    return maps[:, top:bottom, left:right].sum((1, 2)) / maps.sum((1, 2))
