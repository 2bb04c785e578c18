"""Datasets through torchvision's own classes, the paper's augmentation, the paper's sampler.

Each ``conf/dataset/*.yaml`` names a ``source`` (a function below, via
``_target_``) and the facts a model needs (channels, image size, classes,
normalisation). A dataset that is not on disk and cannot be downloaded ends
with ``DatasetUnavailable``: one line naming the folder and how to fill it.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import datasets, transforms

from gmmvit.models.common import ConfigError

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable; the message says how to get it."""


def _download_or_explain(load, name: str, root: Path, how: str):
    """Call ``load(download)``: first from disk, then with a download; one clear line if both fail."""
    try:
        return load(False)
    except (RuntimeError, FileNotFoundError, OSError):
        pass
    try:
        return load(True)
    except Exception as exc:  # network errors come in many types (URLError, socket, SSL, HTTP)
        raise DatasetUnavailable(
            f"dataset {name} is not in {root} and could not be downloaded "
            f"({type(exc).__name__}); {how}") from None


def cifar10(root: str, train: bool):
    root = Path(root)
    return _download_or_explain(
        lambda dl: datasets.CIFAR10(str(root), train=train, download=dl), "cifar10", root,
        f"run once with network access, or copy cifar-10-batches-py/ into {root}")


def cifar100(root: str, train: bool):
    root = Path(root)
    return _download_or_explain(
        lambda dl: datasets.CIFAR100(str(root), train=train, download=dl), "cifar100", root,
        f"run once with network access, or copy cifar-100-python/ into {root}")


def svhn(root: str, train: bool):
    root = Path(root)
    split = "train" if train else "test"
    return _download_or_explain(
        lambda dl: datasets.SVHN(str(root), split=split, download=dl), "svhn", root,
        f"run once with network access, or copy {split}_32x32.mat into {root}")


def tinyimagenet(root: str, train: bool):
    """Tiny-ImageNet as ImageFolders; val/ is regrouped by class from val_annotations.txt once."""
    root = Path(root)
    base = root / "tiny-imagenet-200"
    if not (base / "train").is_dir():
        raise DatasetUnavailable(
            f"dataset tinyimagenet is not in {base}; download "
            f"http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into {root}")
    if not train:
        _regroup_tinyimagenet_val(base / "val")
    return datasets.ImageFolder(str(base / ("train" if train else "val")))


def _regroup_tinyimagenet_val(val: Path) -> None:
    annotations = val / "val_annotations.txt"
    images = val / "images"
    if not images.is_dir():
        return
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        src = images / fields[0]
        if src.exists():
            (val / fields[1]).mkdir(exist_ok=True)
            src.rename(val / fields[1] / fields[0])
    if not any(images.iterdir()):
        images.rmdir()


def fashion_mnist(root: str, train: bool, debian_dir: str = str(FASHION_MNIST_DEBIAN)):
    """torchvision's FashionMNIST; its raw files come from Debian's dataset-fashion-mnist when present."""
    root = Path(root)
    raw = root / "FashionMNIST" / "raw"
    debian = Path(debian_dir)
    if debian.is_dir():
        raw.mkdir(parents=True, exist_ok=True)
        for gz in debian.glob("*-ubyte.gz"):
            target = raw / gz.name[:-3]
            if not target.exists():
                tmp = target.with_suffix(".tmp")
                with gzip.open(gz) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                tmp.rename(target)
    return _download_or_explain(
        lambda dl: datasets.FashionMNIST(str(root), train=train, download=dl), "fashion_mnist", root,
        "install Debian's package: apt-get install dataset-fashion-mnist (make install does)")


class Digits(Dataset):
    """scikit-learn's 8x8 digits (1,797 images) as PIL images; a fixed 80/20 split."""

    def __init__(self, train: bool, test_fraction: float = 0.2):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
        order = np.random.RandomState(0).permutation(len(images))
        n_test = int(len(images) * test_fraction)
        keep = order[n_test:] if train else order[:n_test]
        self.data = images[keep]
        self.targets = bunch.target[keep].tolist()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i], mode="L"), self.targets[i]


def digits(root: str, train: bool):
    return Digits(train)


class Transformed(Dataset):
    """A dataset with a transform applied to its images (torchvision's classes take one at build time;
    this lets the same loaded split serve several pipelines)."""

    def __init__(self, base: Dataset, transform):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        img, target = self.base[i]
        if self.transform is not None:
            img = self.transform(img)
        return img, target


AUTOAUGMENT_POLICIES = {
    "cifar10": transforms.AutoAugmentPolicy.CIFAR10,
    "svhn": transforms.AutoAugmentPolicy.SVHN,
    "imagenet": transforms.AutoAugmentPolicy.IMAGENET,
}


def build_transforms(ds, aug, train: bool):
    """The paper's pipeline: flip, crop (pad 4), AutoAugment, tensor, normalise, random erasing."""
    size = ds.img_size
    pre = []
    if ds.native_size != size:
        # small images (Fashion-MNIST 28px, digits 8px) are brought to the model's input size
        pre.append(transforms.Resize(size) if ds.resize == "resize" else
                   transforms.Pad((size - ds.native_size) // 2))
    # plain lists, not OmegaConf ListConfigs: torch turns them into tensors
    post = [transforms.ToTensor(), transforms.Normalize(list(ds.mean), list(ds.std))]
    if not train:
        return transforms.Compose(pre + post)
    steps = list(pre)
    if aug.hflip and ds.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    if aug.crop_padding:
        steps.append(transforms.RandomCrop(size, padding=aug.crop_padding))
    if aug.autoaugment and ds.autoaugment_policy:
        steps.append(transforms.AutoAugment(AUTOAUGMENT_POLICIES[ds.autoaugment_policy]))
    steps += post
    if aug.random_erasing > 0:
        steps.append(transforms.RandomErasing(
            p=aug.random_erasing, scale=(0.02, aug.random_erasing_max_area),
            ratio=(aug.random_erasing_min_aspect, 1 / aug.random_erasing_min_aspect),
            value=list(ds.mean)))
    return transforms.Compose(steps)


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


def load_splits(ds) -> tuple[Dataset, Dataset]:
    """(train, test) raw splits from the dataset config's ``source``."""
    from hydra.utils import instantiate

    train = instantiate(ds.source, train=True)
    test = instantiate(ds.source, train=False)
    return train, test

