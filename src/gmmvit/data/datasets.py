"""The datasets, through torchvision's own classes (and scikit-learn's digits).

Each ``conf/dataset/*.yaml`` names a ``source`` (a function below, via
``_target_``) and the facts a model needs (channels, image size, classes,
normalisation). A dataset that is not on disk and cannot be downloaded ends
with ``DatasetUnavailable``: one line naming the folder and how to fill it.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from gmmvit.errors import DatasetUnavailable

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


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


def load_splits(ds) -> tuple[Dataset, Dataset]:
    """(train, test) raw splits from the dataset config's ``source``."""
    from hydra.utils import instantiate

    train = instantiate(ds.source, train=True)
    test = instantiate(ds.source, train=False)
    return train, test
