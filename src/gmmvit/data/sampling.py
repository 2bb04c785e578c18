"""Which training images a run sees, and in which order: seeded subsets and the authors' epoch of
repeated passes."""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from gmmvit.errors import ConfigError


def subset(dataset: Dataset, limit: Optional[int], seed: int = 0) -> Dataset:
    """The first ``limit`` items of a fixed random permutation (for demos and tests)."""
    if not limit or limit >= len(dataset):
        return dataset
    idx = np.random.RandomState(seed).permutation(len(dataset))[:limit]
    return torch.utils.data.Subset(dataset, idx.tolist())


def split_targets(dataset: Dataset) -> np.ndarray:
    """The class of every item, from the labels torchvision's datasets keep in memory
    (``targets``, or SVHN's ``labels``); other datasets are read item by item."""
    if isinstance(dataset, torch.utils.data.Subset):
        return split_targets(dataset.dataset)[np.asarray(dataset.indices)]
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    return np.asarray(labels).reshape(-1)


def class_balanced_subset(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """``fraction`` of every class (rounded, at least one image each), drawn by ``seed`` alone.

    The indices depend only on the labels, the fraction and the seed, never on the model or the
    mask, so runs of one seed train on the same images and their accuracies pair. The kept indices
    are in ascending order.
    """
    if fraction is None or fraction >= 1.0:
        return dataset
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"dataset.train_fraction must be in (0, 1], got {fraction}")
    targets = split_targets(dataset)
    rng = np.random.RandomState(seed)
    keep = []
    for cls in np.unique(targets):
        members = np.flatnonzero(targets == cls)
        keep.append(rng.permutation(members)[:max(1, round(fraction * len(members)))])
    return torch.utils.data.Subset(dataset, np.sort(np.concatenate(keep)).tolist())


def hold_out(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Optional[Dataset]]:
    """(training images, validation images): ``round(fraction x n_c)`` images of every class c (at
    least one) held out of the training set, drawn by ``seed`` alone, so every model and mask of a
    seed validates on the same images and trains on the same rest. ``fraction`` 0: (dataset, None),
    the paper's protocol (no validation split)."""
    if not fraction:
        return dataset, None
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction must be in [0, 1), got {fraction}")
    targets = split_targets(dataset)
    rng = np.random.RandomState([seed, 1])  # its own stream: independent of train_fraction's draw
    held = np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:max(1, round(fraction * n))]
                           for c, n in zip(*np.unique(targets, return_counts=True))])
    rest = np.setdiff1d(np.arange(len(targets)), held)
    return (torch.utils.data.Subset(dataset, rest.tolist()),
            torch.utils.data.Subset(dataset, np.sort(held).tolist()))


def batch_fixes(cut: list[str]) -> str:
    """What makes room for a full batch: a smaller batch, or undoing each setting that cut the images."""
    return "lower recipe.batch_size" + "".join(
        f" or {'lower' if c.startswith('dataset.val_fraction') else 'raise'} {c.split('=')[0]}" for c in cut)


def no_full_batch(cfg, images: int) -> str:
    """The line for a training split of ``images`` found to hold no full batch once the data is read
    (the check before it bounds the count from above), naming the settings that cut it."""
    ds, cut = cfg.dataset, []
    if ds.get("val_fraction"):
        cut.append(f"dataset.val_fraction={ds.val_fraction}")
    if ds.get("train_fraction", 1.0) < 1:
        cut.append(f"dataset.train_fraction={ds.train_fraction}")
    if cfg.limit_train is not None and images <= cfg.limit_train:
        cut.append(f"limit_train={cfg.limit_train}")
    left = f"the {images} training images left by {' and '.join(cut)}" if cut else f"{images} training images"
    return f"no full batch of {cfg.recipe.batch_size} in {left}; {batch_fixes(cut)}"


class RepeatedPassSampler(Sampler[int]):
    """The authors' epoch: ``passes`` consecutive fresh permutations of the data (3 for the paper).

    Their RASampler with repetitions=1 and length factor 3. The order depends only
    on (seed, epoch), so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, dataset_len: int, passes: float = 3.0, seed: int = 0):
        self.dataset_len = dataset_len
        self.passes = passes
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.dataset_len * self.passes)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n_full = int(np.ceil(self.passes))
        order = torch.cat([torch.randperm(self.dataset_len, generator=g) for _ in range(n_full)])
        return iter(order[: len(self)].tolist())
