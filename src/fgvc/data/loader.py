"""Datasets and DataLoaders for prepared splits (``fgvc.data.splits``): transforms, samplers, workers."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset

from fgvc.data.dataset import ImageDataset, collate
from fgvc.data.records import Sample
from fgvc.data.samplers import BalancedSampler, ResumableSampler
from fgvc.data.section import DataConfig
from fgvc.data.shards import ShardDataset, ShardIndex
from fgvc.data.transforms import eval_transform_for, train_transform_for
from fgvc.errors import ConfigError, DataError


def make_dataset(cfg: DataConfig, samples: list[Sample], train: bool) -> ImageDataset:
    transform = train_transform_for(cfg) if train else eval_transform_for(cfg)
    if isinstance(samples, ShardIndex):  # a split of data.format=shards: streamed from its tar files
        return ShardDataset(samples, transform, cfg.metadata, cfg.bad_metadata, cfg.bad_images == "skip",
                            cfg.shuffle_buffer, max_pixels=cfg.max_image_pixels)
    return ImageDataset(samples, transform, cfg.metadata, cfg.bad_metadata, cfg.bad_images == "skip",
                        tensor_images=True, max_pixels=cfg.max_image_pixels)


def make_loader(cfg: DataConfig, dataset: ImageDataset, *, train: bool, seed: int = 0,
                rank: int = 0, world_size: int = 1) -> DataLoader:
    """Training loaders shuffle with a resumable sampler; eval loaders keep order (sharded when DDP).

    With ``data.joint`` training batches are balanced: ``batch_size / len(joint)`` images of each dataset.
    A ``ShardDataset`` has no sampler: it deals its stream to ranks and workers itself, batch by batch.
    """
    if isinstance(dataset, ShardDataset):
        batch_size = cfg.batch_size if train else (cfg.eval_batch_size or 2 * cfg.batch_size)
        dataset = dataset.stream(seed=seed, shuffle=train, rank=rank, world_size=world_size, chunk=batch_size)
        sampler = None
    elif train and cfg.joint:
        sampler = _balanced_sampler(cfg, dataset, seed, rank, world_size)
    else:
        sampler = ResumableSampler(len(dataset), seed, shuffle=train, rank=rank, world_size=world_size)
    workers = cfg.num_workers
    # Its own generator: each new iterator draws a worker base seed, which from the global generator
    # would shift the model's random numbers (dropout) after a mid-epoch resume.
    return DataLoader(dataset, batch_size=cfg.batch_size if train else (cfg.eval_batch_size or 2 * cfg.batch_size),
                      sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available(), drop_last=train,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                      generator=torch.Generator().manual_seed(seed))


def set_epoch(loader: DataLoader, epoch: int, start: int = 0) -> None:
    """Position a training loader ``start`` samples (all ranks together) into ``epoch``: through its
    sampler, or through the dataset itself when it is streamed (shards)."""
    target = loader.dataset if isinstance(loader.dataset, IterableDataset) else loader.sampler
    target.set_epoch(epoch, start=start)


def _balanced_sampler(cfg: DataConfig, dataset: ImageDataset, seed: int, rank: int,
                      world_size: int) -> BalancedSampler:
    names = [source.dataset_name for source in cfg.joint]
    if cfg.batch_size % len(names):
        raise ConfigError(f"data.batch_size ({cfg.batch_size}) must be a multiple of the {len(names)} datasets "
                          "of data.joint: each batch holds the same number of images of each")
    index = {name: i for i, name in enumerate(names)}
    unknown = next((s.dataset for s in dataset.samples if s.dataset not in index), None)
    if unknown is not None:
        raise DataError(f"a training sample of dataset '{unknown}' is not one of data.joint ({', '.join(names)})")
    return BalancedSampler([index[s.dataset] for s in dataset.samples], cfg.batch_size // len(names), seed,
                           rank=rank, world_size=world_size)
