"""The loader a run evaluates a split with, shared by the training loop and ``make eval`` so that
evaluating a run again goes through exactly the pipeline that recorded its numbers."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from gmmvit.data import resident
from gmmvit.data.transforms import Transformed, build_transforms


def eval_loader(split, cfg: DictConfig, device: torch.device, workers: int):
    """The loader a run evaluates ``split`` with (test and validation alike): the test transforms,
    twice the training batch, in order; on the device when ``data_on_gpu`` puts it there."""
    ds, batch = cfg.dataset, 2 * cfg.recipe.batch_size
    on_device = resident.gpu_test_loader(cfg.get("data_on_gpu", "auto"), split, ds, batch, device)
    if on_device is not None:
        return on_device
    return DataLoader(Transformed(split, build_transforms(ds, cfg.recipe.aug, train=False)), batch_size=batch,
                      shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)
