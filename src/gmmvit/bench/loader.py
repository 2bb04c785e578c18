"""Loader throughput per core: the per-image PIL pipeline against the batched uint8 pipeline."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from gmmvit.bench.machine import compose, torch_threads
from gmmvit.data.batched import IMAGES_PER_CALL, BatchAugment, to_model_size
from gmmvit.data.transforms import build_transforms


def synthetic_images(ds, n: int, seed: int = 0) -> np.ndarray:
    """n random uint8 images of the dataset's native size and channels, [n, H, W(, C)]."""
    rng = np.random.RandomState(seed)
    shape = (n, ds.native_size, ds.native_size) + ((ds.channels,) if ds.channels > 1 else ())
    return rng.randint(0, 256, size=shape, dtype=np.uint8)


def loader_throughput(dataset: str, n: int = 2048, batch: int = 128, chunk: int = 16) -> dict:
    """img/s on one core: PIL per-image pipeline vs batched tensor pipeline (both AutoAugment modes;
    per-image AA with the recipe's ``recipe.aug.ops`` and with torchvision's), the latter on calls of
    ``IMAGES_PER_CALL["cpu"]`` images as the training loader makes them."""
    cfg = compose([f"dataset={dataset}"])
    ds, aug = cfg.dataset, cfg.recipe.aug
    arrays = synthetic_images(ds, n)
    mode = "RGB" if ds.channels == 3 else "L"
    pil = [Image.fromarray(a, mode=mode) for a in arrays]
    row = {"dataset": dataset, "image": f"{ds.channels}x{ds.native_size}x{ds.native_size}"}
    with torch_threads(1):
        transform = build_transforms(ds, aug, train=True)
        transform(pil[0])
        t0 = time.perf_counter()
        for img in pil:
            transform(img)
        row["pil"] = n / (time.perf_counter() - t0)
        tensor = torch.from_numpy(arrays)
        tensor = tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)
        tensor = to_model_size(tensor.contiguous(), ds)
        # the recipe's ops (the authors' by default) and torchvision's (the batched path before
        # recipe.aug.ops, the same images) take turns pass by pass, so both see the same machine load
        torchvision_ops = aug.copy()
        torchvision_ops.ops = "torchvision"
        augments = {"tensor_sample": BatchAugment(ds, aug, chunk=chunk),
                    "tensor_sample_torchvision": BatchAugment(ds, torchvision_ops, chunk=chunk),
                    "tensor_batch": BatchAugment(ds, aug, autoaugment="batch", chunk=chunk)}
        timings = {key: [] for key in augments}
        for augment in augments.values():
            augment(tensor[:batch])
        for _ in range(2):  # the first pass also pays for allocating the larger buffers
            for key, augment in augments.items():
                t0 = time.perf_counter()
                for part in tensor.split(IMAGES_PER_CALL["cpu"]):
                    augment(part)
                timings[key].append(time.perf_counter() - t0)
        row.update({key: n / min(t) for key, t in timings.items()})
    return row
