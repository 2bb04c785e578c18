"""The datasets, through torchvision's own classes (and scikit-learn's digits).

Each ``conf/dataset/*.yaml`` names a ``source`` (a function below, via
``_target_``) and the facts a model needs (channels, image size, classes,
normalisation). A dataset that is not on disk and cannot be downloaded ends
with ``DatasetUnavailable``: one line naming the folder and how to fill it.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from gmmvit.data import facts
from gmmvit.data.faults import (corrupt, damaged, data_folder, folder_fault, found_nearby, idx_damage,
                                is_folder_fault, misplaced, unreadable_image)
from gmmvit.errors import DatasetUnavailable

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def _download_or_explain(load, name: str, root: Path, how: str, damage=(), where=None):
    """Call ``load(download)``: first from disk, then with a download; one clear line if both fail:
    the first damaged file one of ``damage`` (calls, each the damaged file's words and their fix, or
    None; ``delete_it`` makes them) finds, the
    data found beside where it belongs (``where``: the folder that should hold it and the names that
    tell it, ``faults.found_nearby``), a folder that cannot be written, or no data and no network."""
    data_folder(name, root)
    try:
        return load(False)
    except (RuntimeError, FileNotFoundError, OSError):
        pass
    for check in damage:
        found = check()
        if found:
            raise DatasetUnavailable(f"dataset {name}: {found}")
    if where is not None:
        expected, markers = where
        nearby = found_nearby(expected, markers)
        if nearby is not None:
            raise misplaced(name, expected, nearby, markers)
    try:
        return load(True)
    except OSError as exc:
        if is_folder_fault(exc):
            raise folder_fault(exc, name, root) from None
        raise _not_downloaded(name, root, how, exc) from None
    except Exception as exc:  # network errors come in many types (URLError, socket, SSL, HTTP)
        raise _not_downloaded(name, root, how, exc) from None


def delete_it(how: str, *checks):
    """``checks`` (calls, each the damaged file's words or None) as damage calls whose fix is: delete it
    and ``how`` (a missing file: ``how``)."""
    def fix(found: Optional[str]) -> Optional[str]:
        if not found:
            return None
        return f"{found}; {how}" if found.endswith(" is missing") else f"{found}; delete it and {how}"

    return [lambda check=check: fix(check()) for check in checks]


def _not_downloaded(name: str, root: Path, how: str, exc: BaseException) -> DatasetUnavailable:
    return DatasetUnavailable(f"dataset {name} is not in {root} and could not be downloaded "
                              f"({type(exc).__name__}); {how}")


def _cifar(cls, name: str, root: str, train: bool):
    """CIFAR-10 or -100 through torchvision's class ``cls``, its files and its downloaded archive
    checked against their checksums, its folder looked for nearby when it is not in ``root``. A file
    of the folder missing or damaged beside an archive with the dataset's checksum is extracted again
    from it, said in one line."""
    root = Path(root)
    folder = root / cls.base_folder
    files = [(folder / f, md5) for f, md5 in cls.train_list + cls.test_list] + \
        [(folder / cls.meta["filename"], cls.meta["md5"])]
    markers = (cls.train_list[0][0], cls.test_list[0][0], cls.meta["filename"])
    archive = root / cls.filename
    how = f"run once with network access, or copy {cls.base_folder}/ into {root}"

    def extracted_damage() -> Optional[str]:
        found = damaged(files)
        if found and check_integrity(str(archive), cls.tgz_md5):
            # torchvision's download step extracts a verified archive without fetching it again
            print(f"[gmmvit] dataset {name}: {found}; extracting {archive} again (its checksum is the dataset's)",
                  flush=True)
            return None
        return found

    return _download_or_explain(
        lambda dl: cls(str(root), train=train, download=dl), name, root, how,
        delete_it(how, extracted_damage, lambda: corrupt([(archive, cls.tgz_md5)])), (folder, markers))


def cifar10(root: str, train: bool):
    return _cifar(datasets.CIFAR10, "cifar10", root, train)


def cifar100(root: str, train: bool):
    return _cifar(datasets.CIFAR100, "cifar100", root, train)


def svhn(root: str, train: bool):
    root = Path(root)
    split = "train" if train else "test"
    _, filename, md5 = datasets.SVHN.split_list[split]
    how = f"run once with network access, or copy {split}_32x32.mat into {root}"
    return _download_or_explain(
        lambda dl: datasets.SVHN(str(root), split=split, download=dl), "svhn", root, how,
        delete_it(how, lambda: damaged([(root / filename, md5)])), (root, (filename,)))


TINY = "tiny-imagenet-200"
TINY_URL = f"http://cs231n.stanford.edu/{TINY}.zip"
TINY_MARKERS = ("wnids.txt", "train")  # what tells a tiny-imagenet-200 folder from another train/


def tinyimagenet(root: str, train: bool):
    """Tiny-ImageNet as ImageFolders, from ``root/tiny-imagenet-200/`` (unzipped there once from
    ``root/tiny-imagenet-200.zip`` when only the zip is), checked whole against the tree's own lists;
    val/ is regrouped by class from val_annotations.txt once, and its labels are the training set's
    class indices (a class val lacks is one line, not shifted labels)."""
    root = data_folder("tinyimagenet", Path(root))
    base = root / TINY
    if not (base / "train").is_dir():
        _unzip_tinyimagenet(root, base)
    again = f"unzip {TINY}.zip again into {root}"
    loader = functools.partial(read_image, name="tinyimagenet", fix=f"replace it: {again}")
    _check_tinyimagenet_train(base, again)
    if train:
        return datasets.ImageFolder(str(base / "train"), loader=loader)
    classes, class_to_idx = datasets.folder.find_classes(str(base / "train"))
    try:
        _regroup_tinyimagenet_val(base / "val", root)
    except OSError as exc:
        if not is_folder_fault(exc):
            raise
        raise folder_fault(exc, "tinyimagenet", root) from None
    val = TrainClassesFolder(str(base / "val"), classes, class_to_idx, loader)
    annotations = base / "val" / "val_annotations.txt"
    listed = (sum(1 for line in annotations.read_text().splitlines() if line.strip()) if annotations.is_file()
              else facts.TINYIMAGENET_VAL_IMAGES)
    if len(val.samples) < listed:
        whose = annotations if annotations.is_file() else f"Tiny-ImageNet's val/ ({annotations} is missing)"
        raise DatasetUnavailable(f"dataset tinyimagenet: {base / 'val'} holds {len(val.samples)} of the {listed} "
                                 f"images of {whose}; {again}")
    return val


def read_image(path: str, name: str, fix: str) -> Image.Image:
    """An ImageFolder's loader (the image as RGB), a file PIL cannot read being one line naming it and
    ``fix``: images are read as they are drawn, in a DataLoader worker as often as not."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # how PIL reports a truncated or garbled file
        raise unreadable_image(name, path, exc, fix) from None


def _unzip_tinyimagenet(root: Path, base: Path) -> None:
    """``base`` filled from the zip beside it: unpacked into a hidden folder, then moved into ``base``
    entry by entry (what ``base`` holds already is kept), so that a cut-off unzip is never taken for
    the data. A tree one folder too deep or too shallow, or no zip, is one line."""
    found = found_nearby(base, TINY_MARKERS)
    if found is not None:
        raise misplaced("tinyimagenet", base, found, TINY_MARKERS)
    archive = root / f"{TINY}.zip"
    if not archive.is_file():
        raise DatasetUnavailable(f"dataset tinyimagenet is not in {base}; download {TINY_URL} into {root} (it is "
                                 "unzipped there on the next run)")
    unpacking = root / f".{TINY}.unzipping"
    print(f"[gmmvit] unzipping {archive} into {root} (once)", flush=True)
    try:
        shutil.rmtree(unpacking, ignore_errors=True)  # what an unzip cut off left
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(unpacking)
        if not (unpacking / TINY / "train").is_dir():
            raise DatasetUnavailable(f"dataset tinyimagenet: {archive} holds no {TINY}/train/, so it is not "
                                     f"Tiny-ImageNet's zip; delete it and download {TINY_URL} again")
        base.mkdir(exist_ok=True)
        for entry in (unpacking / TINY).iterdir():
            if not (base / entry.name).exists():
                entry.rename(base / entry.name)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DatasetUnavailable(f"dataset tinyimagenet: {archive} is corrupt ({exc}); delete it and download "
                                 f"{TINY_URL} again") from None
    except OSError as exc:
        if not is_folder_fault(exc):
            raise
        raise folder_fault(exc, "tinyimagenet", root) from None
    finally:
        shutil.rmtree(unpacking, ignore_errors=True)


def _check_tinyimagenet_train(base: Path, again: str) -> None:
    """train/ whole, by the tree's own lists where they are there (wnids.txt, each class's
    <wnid>_boxes.txt), else by the format's counts: a class missing or short of images would train
    without a word (fewer classes, another label for each class after it)."""
    train, wnids = base / "train", base / "wnids.txt"
    found = sorted(d.name for d in train.iterdir() if d.is_dir())
    if wnids.is_file():
        listed = wnids.read_text().split()
        missing, extra = [w for w in listed if w not in found], [d for d in found if d not in listed]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DatasetUnavailable(f"dataset tinyimagenet: {train} holds {len(listed) - len(missing)} of the "
                                     f"{len(listed)} classes of {wnids} ({missing[0]}{more} missing); {again}")
        if extra:
            raise DatasetUnavailable(f"dataset tinyimagenet: {train / extra[0]} is not a class of {wnids}; move it "
                                     f"out of {train}")
    elif len(found) != facts.TINYIMAGENET_CLASSES:
        raise DatasetUnavailable(f"dataset tinyimagenet: {train} holds {len(found)} classes, not Tiny-ImageNet's "
                                 f"{facts.TINYIMAGENET_CLASSES} ({wnids} is missing too); {again}")
    for wnid in found:
        folder = train / wnid
        boxes = folder / f"{wnid}_boxes.txt"
        listed = (sum(1 for line in boxes.read_text().splitlines() if line.strip()) if boxes.is_file()
                  else facts.TINYIMAGENET_TRAIN_IMAGES_PER_CLASS)
        images = sum(1 for _, _, files in os.walk(folder) for f in files
                     if f.lower().endswith(datasets.folder.IMG_EXTENSIONS))
        if images < listed:
            raise DatasetUnavailable(f"dataset tinyimagenet: {folder} holds {images} of its {listed} images; {again}")


class TrainClassesFolder(datasets.ImageFolder):
    """An ImageFolder whose classes are given (the training set's), not found in its own folder: a
    class it lacks or adds would shift every label after it."""

    def __init__(self, folder: str, classes: list[str], class_to_idx: dict[str, int], loader):
        self._given = (classes, class_to_idx)
        super().__init__(folder, loader=loader)

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


FASHION_MNIST_HOW = "install Debian's package: apt-get install dataset-fashion-mnist (make install does)"


def fashion_mnist(root: str, train: bool, debian_dir: str = str(FASHION_MNIST_DEBIAN), cls=datasets.FashionMNIST):
    """torchvision's FashionMNIST (``cls``); its raw files come from Debian's dataset-fashion-mnist when
    present. torchvision reads the unpacked idx files with no checksum, so their sizes are checked
    against their headers, and a downloaded .gz beside them against its checksum."""
    root = data_folder("fashion_mnist", Path(root))
    raw = root / "FashionMNIST" / "raw"
    debian = Path(debian_dir)
    if debian.is_dir():
        try:
            _unpack(debian, raw)
        except OSError as exc:
            if not is_folder_fault(exc):
                raise
            raise folder_fault(exc, "fashion_mnist", root) from None
    archives = [(raw / gz, md5) for gz, md5 in cls.resources]
    return _download_or_explain(
        lambda dl: cls(str(root), train=train, download=dl), "fashion_mnist", root, FASHION_MNIST_HOW,
        [lambda: _idx_damage_and_fix(archives, debian),
         *delete_it(FASHION_MNIST_HOW, lambda: corrupt(archives))])


def _idx_damage_and_fix(archives: list[tuple[Path, str]], debian: Path) -> Optional[str]:
    """The first damaged idx file and what fixes it: where a .gz it is unpacked from is there (Debian's,
    unpacked on every run; or the download beside it, which torchvision unpacks again once its checksum
    passes), deleting it is enough; else it must come again from Debian's package."""
    for gz, md5 in archives:
        found = idx_damage([gz.with_suffix("")])
        if found is None:
            continue
        if debian.is_dir() and (debian / gz.name).is_file():
            return f"{found}; delete it: the next run unpacks it again from {debian / gz.name}"
        if check_integrity(str(gz), md5):
            return f"{found}; delete it: the next run unpacks it again from {gz}"
        return f"{found}; delete it and {FASHION_MNIST_HOW}"
    return None


def _unpack(debian: Path, raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for gz in debian.glob("*-ubyte.gz"):
        target = raw / gz.name[:-3]
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            try:
                with gzip.open(gz) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # the package's file cut short or garbled
                tmp.unlink(missing_ok=True)
                raise DatasetUnavailable(f"dataset fashion_mnist: {gz} is corrupt ({exc}); reinstall Debian's "
                                         "package: apt-get install --reinstall dataset-fashion-mnist") from None
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
