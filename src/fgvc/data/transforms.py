"""Train and eval image pipelines (torchvision transforms v2), ImageNet normalisation."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_normalised_tensor() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(size: int, min_scale: float = 0.08, hflip: bool = True,
                    resize: int | None = None) -> v2.Compose:
    """Random-resized crop + horizontal flip (Dynamic MLP, erudite, CTC); with ``resize``, a square
    resize to ``resize`` then a random ``size`` crop + flip (PMG, RMG-PMSI: 512 → 448)."""
    if resize:
        steps = [v2.Resize((resize, resize), antialias=True), v2.RandomCrop(size)]
    else:
        steps = [v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalised_tensor())


def eval_geometry(size: int, crop_pct: float = 0.875, resize: int | None = None) -> list:
    """Resize the short side to ``size / crop_pct`` (or the square ``resize``), then centre-crop ``size``."""
    first = v2.Resize((resize, resize) if resize else int(round(size / crop_pct)), antialias=True)
    return [first, v2.CenterCrop(size)]


def eval_transform(size: int, crop_pct: float = 0.875, resize: int | None = None) -> v2.Compose:
    return v2.Compose(eval_geometry(size, crop_pct, resize) + _to_normalised_tensor())


class Views:
    """Several evaluation views of one image (test-time augmentation).

    Calling it gives a list of normalised tensors, so a dataset item's ``image`` becomes that list and
    the default collate turns it into one ``[B, 3, S, S]`` batch per view (views of different sizes are
    fine: each view is its own batch). A pipeline may return a tuple (``TenCrop``); it is flattened.
    """

    def __init__(self, pipelines: list):
        self.pipelines = list(pipelines)

    def __call__(self, image) -> list[torch.Tensor]:
        views = []
        for pipeline in self.pipelines:
            out = pipeline(image)
            views.extend(out if isinstance(out, (tuple, list)) else [out])
        return views


def flip_views(size: int, crop_pct: float = 0.875, resize: int | None = None) -> Views:
    """The centre crop and its mirror image."""
    mirror = v2.Compose(eval_geometry(size, crop_pct, resize) + [v2.RandomHorizontalFlip(p=1.0)]
                        + _to_normalised_tensor())
    return Views([eval_transform(size, crop_pct, resize), mirror])


def ten_crop_views(size: int, crop_pct: float = 0.875, resize: int | None = None) -> Views:
    """torchvision's ``TenCrop`` of the ``size / crop_pct`` resize (or the square ``resize``): the four
    corners and the centre (tl, tr, bl, br, c), then the same five crops of the mirrored image (so
    the mirrors of tr, tl, br, bl, c)."""
    first = eval_geometry(size, crop_pct, resize)[0]
    return Views([EachCrop(v2.Compose([first, v2.TenCrop(size)]), v2.Compose(_to_normalised_tensor()))])


class EachCrop:
    """A geometry that gives several crops, then ``finish`` on each crop by itself (v2 transforms
    given a tuple of plain tensors would convert only the first)."""

    def __init__(self, geometry, finish):
        self.geometry, self.finish = geometry, finish

    def __call__(self, image) -> list[torch.Tensor]:
        return [self.finish(crop) for crop in self.geometry(image)]


def multi_scale_views(sizes: list[int], size: int, crop_pct: float = 0.875, resize: int | None = None) -> Views:
    """The evaluation pipeline at each of ``sizes``; a square ``resize`` scales with the crop
    (512 → 448 at 448 px becomes 640 → 560 at 560 px)."""
    return Views([eval_transform(s, crop_pct, round(resize * s / size) if resize else None) for s in sizes])
