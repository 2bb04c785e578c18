"""``data_on_gpu``: the training split held on the device as uint8, augmented a whole batch at a time
there (``gmmvit.data.batched``), and the test split beside it, normalised a batch at a time: batches
in the sampler's order, with no loader processes."""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from torch.utils.data import Dataset

from gmmvit.data.batched import IMAGES_PER_CALL, BatchAugment, normalize, split_arrays, to_model_size
from gmmvit.errors import ConfigError

DATA_ON_GPU = ("auto", "true", "false")
# auto puts the data on the GPU when it takes at most this fraction of the device's memory
GPU_MEMORY_FRACTION = 0.25


class GpuBatches:
    """(images, targets) batches from device-resident uint8 data, in the sampler's order."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, sampler, batch_size: int,
                 drop_last: bool, augment: BatchAugment, batches_per_call: Optional[int] = None):
        self.images, self.targets = images, targets
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.augment = augment
        # several batches per augmentation call (IMAGES_PER_CALL); per-image draws are unchanged
        if batches_per_call is None:
            per_call = IMAGES_PER_CALL.get(images.device.type, IMAGES_PER_CALL["cuda"])
            batches_per_call = per_call // batch_size
        self.batches_per_call = max(1, batches_per_call)

    @classmethod
    def from_split(cls, split: Dataset, ds, recipe, device, sampler,
                   autoaugment: str = "sample") -> "GpuBatches":
        images, targets = split_arrays(split)
        images = to_model_size(images.to(device), ds)
        return cls(images, targets.to(device), sampler, recipe.batch_size, recipe.drop_last,
                   BatchAugment(ds, recipe.aug, autoaugment=autoaugment))

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long).to(self.images.device)
        bs, n_batches = self.batch_size, len(self)
        for first in range(0, n_batches, self.batches_per_call):
            last = min(first + self.batches_per_call, n_batches)
            idx = order[first * bs:last * bs]
            images, targets = self.augment(self.images[idx]), self.targets[idx]
            for k in range(last - first):
                yield images[k * bs:(k + 1) * bs], targets[k * bs:(k + 1) * bs]


class GpuTestBatches:
    """The test split on the device, in order, normalised a batch at a time: what
    ``build_transforms(train=False)`` does per image, with no loader processes."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int, ds):
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.mean = torch.tensor(list(ds.mean), dtype=torch.float32)
        self.std = torch.tensor(list(ds.std), dtype=torch.float32)

    @classmethod
    def from_split(cls, split: Dataset, ds, batch_size: int, device) -> "GpuTestBatches":
        images, targets = split_arrays(split)
        return cls(to_model_size(images.to(device), ds), targets.to(device), batch_size, ds)

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for first in range(0, len(self.targets), self.batch_size):
            last = first + self.batch_size
            yield normalize(self.images[first:last], self.mean, self.std), self.targets[first:last]


def dataset_bytes(n: int, ds) -> int:
    return n * ds.channels * ds.img_size * ds.img_size


def wanted(setting, device, n: int, ds) -> bool:
    """``data_on_gpu``: true/false, or auto = on CUDA when the uint8 split takes at most
    ``GPU_MEMORY_FRACTION`` of the device memory."""
    setting = str(setting).lower() if setting is not None else "auto"
    if setting not in DATA_ON_GPU:
        raise ConfigError(f"data_on_gpu must be one of {DATA_ON_GPU}, got {setting!r}")
    if setting != "auto":
        return setting == "true"
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    return dataset_bytes(n, ds) <= GPU_MEMORY_FRACTION * total


def gpu_train_loader(setting, split: Dataset, ds, recipe, device, sampler) -> Optional[GpuBatches]:
    """The GPU-resident loader when ``data_on_gpu`` asks for it (None: use the DataLoader)."""
    if not wanted(setting, device, len(split), ds):
        return None
    return GpuBatches.from_split(split, ds, recipe, device, sampler)


def gpu_test_loader(setting, split: Dataset, ds, batch_size: int, device) -> Optional[GpuTestBatches]:
    """The device-resident test loader when ``data_on_gpu`` asks for it (None: use the DataLoader)."""
    if not wanted(setting, device, len(split), ds):
        return None
    return GpuTestBatches.from_split(split, ds, batch_size, device)


__all__ = ["GpuBatches", "GpuTestBatches", "wanted", "gpu_train_loader", "gpu_test_loader", "DATA_ON_GPU"]
