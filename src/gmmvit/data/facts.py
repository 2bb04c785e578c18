"""What a dataset is, read without loading it: its number of classes and channels, from the data
on disk where reading them is cheap (CIFAR's meta file, Tiny-ImageNet's wnids.txt or class folders,
scikit-learn's digits), else from the format itself (every CIFAR-10 has 10 classes)."""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


@dataclass(frozen=True)
class Facts:
    num_classes: int
    channels: int
    where: str  # what the facts were read from, for the message


def _cifar(folder: str, meta: str, key: str, classes: int) -> Callable[[Optional[Path]], Facts]:
    def read(root: Optional[Path]) -> Facts:
        path = root / folder / meta if root is not None else None
        if path is not None and path.is_file():
            try:
                with open(path, "rb") as f:  # the file torchvision's CIFAR class unpickles as it loads
                    return Facts(len(pickle.load(f, encoding="latin1")[key]), 3, str(path))
            except Exception:
                pass  # a corrupt meta file is the loader's to report, with its path
        return Facts(classes, 3, f"the {folder} format")
    return read


# what a complete tiny-imagenet-200.zip holds; the tree's own lists say it where they are on disk
# (wnids.txt, train/<wnid>/<wnid>_boxes.txt, val/val_annotations.txt)
TINYIMAGENET_CLASSES = 200
TINYIMAGENET_TRAIN_IMAGES_PER_CLASS = 500
TINYIMAGENET_VAL_IMAGES = 10_000


def _tinyimagenet(root: Optional[Path]) -> Facts:
    """The classes wnids.txt lists, else the class folders of train/: a train/ missing classes is the
    loader's to name, not a dataset of fewer classes to train."""
    base = root / "tiny-imagenet-200" if root is not None else None
    wnids = base / "wnids.txt" if base is not None else None
    if wnids is not None and wnids.is_file():
        listed = wnids.read_text().split()
        if listed:
            return Facts(len(listed), 3, str(wnids))
    train = base / "train" if base is not None else None
    if train is not None and train.is_dir():
        classes = sum(1 for p in train.iterdir() if p.is_dir())
        if classes:
            return Facts(classes, 3, str(train))
    return Facts(TINYIMAGENET_CLASSES, 3, "the tiny-imagenet-200 format")


@functools.lru_cache(maxsize=1)
def _digits(root: Optional[Path]) -> Facts:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Facts(len(set(bunch.target.tolist())), 1, "scikit-learn's load_digits")


# by the dataset config's source._target_ (gmmvit.data.datasets)
READERS = {
    "gmmvit.data.datasets.cifar10": _cifar("cifar-10-batches-py", "batches.meta", "label_names", 10),
    "gmmvit.data.datasets.cifar100": _cifar("cifar-100-python", "meta", "fine_label_names", 100),
    "gmmvit.data.datasets.svhn": lambda root: Facts(10, 3, "the SVHN format"),
    "gmmvit.data.datasets.tinyimagenet": _tinyimagenet,
    "gmmvit.data.datasets.fashion_mnist": lambda root: Facts(10, 1, "the Fashion-MNIST format"),
    "gmmvit.data.datasets.digits": _digits,
}


def facts(target: str, root: Optional[str]) -> Optional[Facts]:
    """The facts of the source ``target`` with its files under ``root`` (None: not known here), or
    None for a source this module does not know."""
    reader = READERS.get(target)
    return reader(Path(root) if root else None) if reader is not None else None
