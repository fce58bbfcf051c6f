"""Train and eval image pipelines (torchvision transforms v2).

Pixels are scaled to [0, 1] and normalised per channel with ``mean`` and ``std``: ImageNet's by
default, any other through ``data.mean`` / ``data.std`` (PMG's release uses 0.5 and 0.5). A
checkpoint's config carries them, so evaluation, prediction and export normalise as training did.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_normalised_tensor(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def train_transform(size: int, min_scale: float = 0.08, hflip: bool = True, resize: int | None = None,
                    padding: int = 0, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Random-resized crop + horizontal flip (Dynamic MLP, erudite, CTC); with ``resize``, a square
    resize to ``resize`` then a random ``size`` crop + flip (RMG-PMSI: 512 → 448), the crop taken from
    the resize zero-padded by ``padding`` px on every side (PMG's release: 550 → 448, padding 8)."""
    if resize:
        steps = [v2.Resize((resize, resize), antialias=True), v2.RandomCrop(size, padding=padding or None)]
    else:
        steps = [v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalised_tensor(mean, std))


def train_transform_for(data) -> v2.Compose:
    """The training pipeline a config's ``data`` section describes."""
    return train_transform(data.image_size, data.min_scale, data.hflip, data.resize, data.crop_padding,
                           data.mean, data.std)


def eval_transform_for(data) -> v2.Compose:
    """The evaluation pipeline a config's ``data`` section describes."""
    return eval_transform(data.image_size, data.crop_pct, data.resize, data.mean, data.std)


def eval_geometry(size: int, crop_pct: float = 0.875, resize: int | None = None) -> list:
    """Resize the short side to ``size / crop_pct`` (or the square ``resize``), then centre-crop ``size``."""
    first = v2.Resize((resize, resize) if resize else int(round(size / crop_pct)), antialias=True)
    return [first, v2.CenterCrop(size)]


def eval_transform(size: int, crop_pct: float = 0.875, resize: int | None = None, mean=IMAGENET_MEAN,
                   std=IMAGENET_STD) -> v2.Compose:
    return v2.Compose(eval_geometry(size, crop_pct, resize) + _to_normalised_tensor(mean, std))


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


def flip_views(size: int, crop_pct: float = 0.875, resize: int | None = None, mean=IMAGENET_MEAN,
               std=IMAGENET_STD) -> Views:
    """The centre crop and its mirror image."""
    mirror = v2.Compose(eval_geometry(size, crop_pct, resize) + [v2.RandomHorizontalFlip(p=1.0)]
                        + _to_normalised_tensor(mean, std))
    return Views([eval_transform(size, crop_pct, resize, mean, std), mirror])


def ten_crop_views(size: int, crop_pct: float = 0.875, resize: int | None = None, mean=IMAGENET_MEAN,
                   std=IMAGENET_STD) -> Views:
    """torchvision's ``TenCrop`` of the ``size / crop_pct`` resize (or the square ``resize``): the four
    corners and the centre (tl, tr, bl, br, c), then the same five crops of the mirrored image (so
    the mirrors of tr, tl, br, bl, c)."""
    first = eval_geometry(size, crop_pct, resize)[0]
    return Views([EachCrop(v2.Compose([first, v2.TenCrop(size)]), v2.Compose(_to_normalised_tensor(mean, std)))])


class EachCrop:
    """A geometry that gives several crops, then ``finish`` on each crop by itself (v2 transforms
    given a tuple of plain tensors would convert only the first)."""

    def __init__(self, geometry, finish):
        self.geometry, self.finish = geometry, finish

    def __call__(self, image) -> list[torch.Tensor]:
        return [self.finish(crop) for crop in self.geometry(image)]


def multi_scale_views(sizes: list[int], size: int, crop_pct: float = 0.875, resize: int | None = None,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Views:
    """The evaluation pipeline at each of ``sizes``; a square ``resize`` scales with the crop
    (512 → 448 at 448 px becomes 640 → 560 at 560 px)."""
    return Views([eval_transform(s, crop_pct, round(resize * s / size) if resize else None, mean, std)
                  for s in sizes])
