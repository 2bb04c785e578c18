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

from gmmvit.data.faults import damaged, data_folder, folder_fault, is_folder_fault
from gmmvit.errors import DatasetUnavailable

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def _download_or_explain(load, name: str, root: Path, how: str, files=()):
    """Call ``load(download)``: first from disk, then with a download; one clear line if both fail:
    a damaged file among ``files`` (path, md5), a folder that cannot be written, or no data and no
    network."""
    data_folder(name, root)
    try:
        return load(False)
    except (RuntimeError, FileNotFoundError, OSError):
        pass
    damage = damaged(files)
    if damage:
        raise DatasetUnavailable(f"dataset {name}: {damage}; delete it and {how}")
    try:
        return load(True)
    except OSError as exc:
        if is_folder_fault(exc):
            raise folder_fault(exc, name, root) from None
        raise _not_downloaded(name, root, how, exc) from None
    except Exception as exc:  # network errors come in many types (URLError, socket, SSL, HTTP)
        raise _not_downloaded(name, root, how, exc) from None


def _not_downloaded(name: str, root: Path, how: str, exc: BaseException) -> DatasetUnavailable:
    return DatasetUnavailable(f"dataset {name} is not in {root} and could not be downloaded "
                              f"({type(exc).__name__}); {how}")


def _cifar(cls, name: str, root: str, train: bool):
    """CIFAR-10 or -100 through torchvision's class ``cls``, its files checked against their checksums."""
    root = Path(root)
    folder = root / cls.base_folder
    files = [(folder / f, md5) for f, md5 in cls.train_list + cls.test_list] + \
        [(folder / cls.meta["filename"], cls.meta["md5"])]
    return _download_or_explain(
        lambda dl: cls(str(root), train=train, download=dl), name, root,
        f"run once with network access, or copy {cls.base_folder}/ into {root}", files)


def cifar10(root: str, train: bool):
    return _cifar(datasets.CIFAR10, "cifar10", root, train)


def cifar100(root: str, train: bool):
    return _cifar(datasets.CIFAR100, "cifar100", root, train)


def svhn(root: str, train: bool):
    root = Path(root)
    split = "train" if train else "test"
    _, filename, md5 = datasets.SVHN.split_list[split]
    return _download_or_explain(
        lambda dl: datasets.SVHN(str(root), split=split, download=dl), "svhn", root,
        f"run once with network access, or copy {split}_32x32.mat into {root}", [(root / filename, md5)])


def tinyimagenet(root: str, train: bool):
    """Tiny-ImageNet as ImageFolders; val/ is regrouped by class from val_annotations.txt once, and
    its labels are the training set's class indices (a class val lacks is one line, not shifted labels)."""
    root = data_folder("tinyimagenet", Path(root))
    base = root / "tiny-imagenet-200"
    if not (base / "train").is_dir():
        raise DatasetUnavailable(
            f"dataset tinyimagenet is not in {base}; download "
            f"http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into {root}")
    if train:
        return datasets.ImageFolder(str(base / "train"))
    classes, class_to_idx = datasets.folder.find_classes(str(base / "train"))
    try:
        _regroup_tinyimagenet_val(base / "val", root)
    except OSError as exc:
        if not is_folder_fault(exc):
            raise
        raise folder_fault(exc, "tinyimagenet", root) from None
    return TrainClassesFolder(str(base / "val"), classes, class_to_idx)


class TrainClassesFolder(datasets.ImageFolder):
    """An ImageFolder whose classes are given (the training set's), not found in its own folder: a
    class it lacks or adds would shift every label after it."""

    def __init__(self, folder: str, classes: list[str], class_to_idx: dict[str, int]):
        self._given = (classes, class_to_idx)
        super().__init__(folder)

    def find_classes(self, directory):
        classes, class_to_idx = self._given
        here = Path(directory)
        found = {d.name for d in here.iterdir() if d.is_dir() and any(d.iterdir())}
        missing, extra = sorted(set(classes) - found), sorted(found - set(classes))
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetUnavailable(
                f"dataset tinyimagenet: {here} has no images of class {missing[0]}{more}, one of the {len(classes)} "
                f"of {here.parent / 'train'}; restore val/ from tiny-imagenet-200.zip (unzip it again)")
        if extra:
            raise DatasetUnavailable(
                f"dataset tinyimagenet: {here / extra[0]} is a class {here.parent / 'train'} does not have; "
                "restore val/ from tiny-imagenet-200.zip (unzip it again)")
        return classes, class_to_idx


def _regroup_tinyimagenet_val(val: Path, root: Path) -> None:
    annotations = val / "val_annotations.txt"
    images = val / "images"
    if not val.is_dir():
        raise DatasetUnavailable(f"dataset tinyimagenet: {val} is missing; unzip tiny-imagenet-200.zip again into "
                                 f"{root}")
    if not images.is_dir():
        return
    if not annotations.is_file():
        raise DatasetUnavailable(f"dataset tinyimagenet: {annotations} is missing, so the images in {images} have no "
                                 f"class; restore it from tiny-imagenet-200.zip (unzip it again into {root})")
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
    root = data_folder("fashion_mnist", Path(root))
    debian = Path(debian_dir)
    if debian.is_dir():
        try:
            _unpack(debian, root / "FashionMNIST" / "raw")
        except OSError as exc:
            if not is_folder_fault(exc):
                raise
            raise folder_fault(exc, "fashion_mnist", root) from None
    return _download_or_explain(
        lambda dl: datasets.FashionMNIST(str(root), train=train, download=dl), "fashion_mnist", root,
        "install Debian's package: apt-get install dataset-fashion-mnist (make install does)")


def _unpack(debian: Path, raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for gz in debian.glob("*-ubyte.gz"):
        target = raw / gz.name[:-3]
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            with gzip.open(gz) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.rename(target)


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
