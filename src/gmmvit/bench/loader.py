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
    """img/s on one core: PIL per-image pipeline vs batched tensor pipeline (both AutoAugment modes),
    the latter on calls of ``IMAGES_PER_CALL["cpu"]`` images as the training loader makes them."""
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
        for key, aa in (("tensor_sample", "sample"), ("tensor_batch", "batch")):
            augment = BatchAugment(ds, aug, autoaugment=aa, chunk=chunk)
            augment(tensor[:batch])
            timings = []
            for _ in range(2):  # the first pass also pays for allocating the larger buffers
                t0 = time.perf_counter()
                for part in tensor.split(IMAGES_PER_CALL["cpu"]):
                    augment(part)
                timings.append(time.perf_counter() - t0)
            row[key] = n / min(timings)
    return row
