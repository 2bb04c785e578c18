"""A run's data, drawn in one place: its splits at its seed, its training loader and the loader it
evaluates a split with. ``train()``, a fused group's members and ``make eval`` all take theirs from
here, so a member trains on the unfused run's data and evaluating a run again goes through exactly
the pipeline that recorded its numbers."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from gmmvit.data import resident, sampling
from gmmvit.data.transforms import Transformed, build_transforms


def run_splits(cfg: DictConfig, splits) -> tuple:
    """(train, validation or None, test): the dataset's ``splits`` cut as the run's config says, at
    its seed (the held-out validation share, the class-balanced fraction, ``limit_train``/``limit_test``)."""
    ds = cfg.dataset
    train_split, test_split = splits
    train_split, val_split = sampling.hold_out(train_split, ds.get("val_fraction", 0.0), cfg.seed)
    train_split = sampling.class_balanced_subset(train_split, ds.get("train_fraction", 1.0), cfg.seed)
    train_split = sampling.subset(train_split, cfg.limit_train, cfg.seed)
    return train_split, val_split, sampling.subset(test_split, cfg.limit_test, cfg.seed)


def training_loader(cfg: DictConfig, split, device: torch.device, workers: int) -> tuple:
    """(loader, sampler): the run's training batches in the authors' order at its seed (repeated
    passes), augmented per image by the DataLoader, or on the device when ``data_on_gpu`` puts the
    split there (``gmmvit.data.resident``)."""
    ds, recipe = cfg.dataset, cfg.recipe
    train_set = Transformed(split, build_transforms(ds, recipe.aug, train=True))
    sampler = sampling.RepeatedPassSampler(len(train_set), recipe.passes_per_epoch, cfg.seed)
    loader = DataLoader(train_set, batch_size=recipe.batch_size, sampler=sampler, drop_last=recipe.drop_last,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    on_device = resident.gpu_train_loader(cfg.get("data_on_gpu", "auto"), split, ds, recipe, device, sampler)
    return on_device or loader, sampler


def eval_loader(split, cfg: DictConfig, device: torch.device, workers: int):
    """The loader a run evaluates ``split`` with (test and validation alike): the test transforms,
    twice the training batch, in order; on the device when ``data_on_gpu`` puts it there."""
    ds, batch = cfg.dataset, 2 * cfg.recipe.batch_size
    on_device = resident.gpu_test_loader(cfg.get("data_on_gpu", "auto"), split, ds, batch, device)
    if on_device is not None:
        return on_device
    # its own generator: an iterator's worker seed is drawn from it, not from the run's data stream
    return DataLoader(Transformed(split, build_transforms(ds, cfg.recipe.aug, train=False)), batch_size=batch,
                      shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, generator=torch.Generator())
