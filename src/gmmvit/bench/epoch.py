"""Training end to end on the GPU: ``train()`` itself on synthetic CIFAR-sized data, and the data
pipeline alone."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import open_dict
from PIL import Image
from torch.utils.data import Dataset

from gmmvit.bench.machine import compose, sync
from gmmvit.data.resident import GpuBatches
from gmmvit.data.sampling import RepeatedPassSampler
from gmmvit.run.recipe import build_mixup
from gmmvit.run.train import train


class SyntheticSplit(Dataset):
    """Random uint8 images held like torchvision's CIFAR (``.data`` NHWC, ``.targets``)."""

    def __init__(self, n: int, size: int, channels: int, classes: int, seed: int):
        rng = np.random.RandomState(seed)
        shape = (n, size, size) + ((channels,) if channels > 1 else ())
        self.data = rng.randint(0, 256, size=shape, dtype=np.uint8)
        self.targets = rng.randint(0, classes, size=n).tolist()
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i], mode=self.mode), self.targets[i]


def synthetic_split(train: bool, n_train: int = 50_000, n_test: int = 2_000, size: int = 32,
                    channels: int = 3, classes: int = 10, root: Optional[str] = None) -> SyntheticSplit:
    """A ``dataset.source`` for ``train()``: CIFAR-shaped random data, no download."""
    return SyntheticSplit(n_train if train else n_test, size, channels, classes, seed=0 if train else 1)


def gpu_epoch(model: str = "vit", mask: str = "gmm", n_train: int = 50_000, passes: float = 1,
              epochs: int = 2, compile=True, attention: str = "auto", data_on_gpu: str = "true",
              device: str = "cuda", batch: int = 128, n_test: int = 2_000,
              profile_steps: Optional[int] = None, step_graph: Optional[str] = None) -> dict:
    """``train()`` for ``epochs`` epochs of ``passes`` x ``n_train`` synthetic CIFAR-sized images;
    img/s of the last epoch (the first one pays for compilation), the fast paths the run took, and
    with ``profile_steps`` its ``profile.md`` (text) and ``profile.json`` (figures)."""
    cfg = compose([f"model={model}", f"mask={mask}", "dataset=cifar10"])
    with tempfile.TemporaryDirectory(prefix="gmmvit-bench-") as tmp, open_dict(cfg):
        cfg.dataset.source = {"_target_": "gmmvit.bench.epoch.synthetic_split", "n_train": n_train,
                              "n_test": n_test, "size": cfg.dataset.img_size,
                              "channels": cfg.dataset.channels, "classes": cfg.dataset.num_classes}
        cfg.run_dir = str(Path(tmp) / "run")
        cfg.device, cfg.compile, cfg.attention, cfg.data_on_gpu = device, compile, attention, data_on_gpu
        cfg.recipe.epochs, cfg.recipe.passes_per_epoch, cfg.recipe.warmup_epochs = epochs, passes, 0
        cfg.recipe.batch_size = batch
        cfg.profile_steps = profile_steps
        if step_graph is not None:  # None: the config's default
            cfg.step_graph = step_graph
        t0 = time.perf_counter()
        record = train(cfg)
        wall = time.perf_counter() - t0
        profile, figures = (Path(cfg.run_dir, name) for name in ("profile.md", "profile.json"))
        profile = profile.read_text() if profile.exists() else None
        figures = json.loads(figures.read_text()) if figures.exists() else None
    history = record.get("history", [])
    if not history:
        raise RuntimeError(f"train() recorded no epoch (status {record.get('status')}: {record.get('reason')})")
    last = history[-1]
    return {"model": model, "mask": mask, "images": int(n_train * passes), "epochs": len(history),
            "img_s": last["img_per_s"], "epoch_s": last["epoch_s"], "first_epoch_s": history[0]["epoch_s"],
            "wall_s": wall, "compile": compile, "attention": attention, "data_on_gpu": data_on_gpu, "step_graph": step_graph,
            "train_loss": last["train_loss"], "paths": record.get("paths", {}), "profile": profile,
            "profile_figures": figures}


def gpu_data_rate(n_train: int = 25_000, device: str = "cuda", batch: int = 128) -> dict:
    """img/s of the training data alone on the device: uint8 CIFAR-sized images through the paper's
    batched augmentation and Mixup/CutMix, as ``train()`` draws them, with no model."""
    cfg = compose(["dataset=cifar10"])
    dev = torch.device(device)
    sampler = RepeatedPassSampler(n_train, 1, 0)
    split = synthetic_split(True, n_train=n_train, size=cfg.dataset.img_size)
    batches = GpuBatches.from_split(split, cfg.dataset, cfg.recipe, dev, sampler)
    mixup = build_mixup(cfg.recipe, cfg.dataset.num_classes)
    rates = []
    for _ in range(2):  # the first pass pays for the kernels' first launches
        sync(dev)
        t0, seen = time.perf_counter(), 0
        for images, targets in batches:
            images, targets = mixup(images, targets)
            seen += images.shape[0]
        sync(dev)
        rates.append(seen / (time.perf_counter() - t0))
    return {"img_s": rates[-1], "images": n_train}
