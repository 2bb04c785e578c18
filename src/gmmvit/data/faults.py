"""What can be wrong with a dataset's files on disk, each as one line naming the path and the fix
(``DatasetUnavailable``): a data folder that is a file, a folder that cannot be written where the data
must be downloaded or unpacked, a file that is there but damaged (its checksum is not the dataset's,
an idx file shorter than its header says, an image PIL cannot read), a downloaded archive cut short,
data unpacked one folder too deep or too shallow."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Iterable, Optional

from PIL import UnidentifiedImageError
from torchvision.datasets.utils import check_integrity

from gmmvit.errors import DatasetUnavailable

# errors of the folder itself, not of the network (a download's socket errors are OSErrors too)
FOLDER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC}
MOVE_IT = "point GMMVIT_DATA (or paths.data=DIR) at a writable folder"


def data_folder(name: str, root: Path) -> Path:
    """``root``, once nothing on its way is a file (GMMVIT_DATA naming a file)."""
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DatasetUnavailable(f"dataset {name}: {folder} is a file, not a folder; {MOVE_IT}")
            break
    return root


def is_folder_fault(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FOLDER_ERRNOS


def folder_fault(exc: OSError, name: str, root: Path) -> DatasetUnavailable:
    """The one line for an OSError of the data folder (read-only, full, a file in the way)."""
    where = exc.filename or root
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return DatasetUnavailable(f"dataset {name}: {where} is in the way ({exc.strerror}); {MOVE_IT}")
    if exc.errno == errno.ENOSPC:
        return DatasetUnavailable(f"dataset {name}: no space left to write {where}; free space or {MOVE_IT}")
    return DatasetUnavailable(f"dataset {name}: {where} cannot be written ({exc.strerror}), and the data must be "
                              f"downloaded or unpacked there; make {root} writable or {MOVE_IT}")


def damaged(files: Iterable[tuple[Path, str]]) -> Optional[str]:
    """``PATH is corrupt`` / ``PATH is missing`` for the first damaged file of a dataset some of whose
    files are on disk (None when none is: the data is simply not there)."""
    files = list(files)
    if not any(path.exists() for path, _ in files):
        return None
    for path, md5 in files:
        if not path.is_file():
            return f"{path} is missing"
        found = corrupt([(path, md5)])
        if found:
            return found
    return None


def corrupt(files: Iterable[tuple[Path, str]]) -> Optional[str]:
    """``PATH is corrupt`` for the first of ``files`` (path, md5) that is on disk but is not the
    dataset's: for a downloaded archive, a download cut short, which torchvision would fetch again, and
    offline that is only 'not downloaded'. Files not on disk are passed over."""
    for path, md5 in files:
        if path.is_file() and not check_integrity(str(path), md5):
            return f"{path} is corrupt (its checksum is not the dataset's)"
    return None


# the bytes of one value of each idx data type (the third byte of the header's magic number)
IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def idx_damage(paths: Iterable[Path]) -> Optional[str]:
    """``PATH is truncated ...`` for the first idx file (MNIST's format) on disk whose size is not the one
    its header gives: torchvision reads it without a checksum and fails on a reshape, or not at all."""
    for path in paths:
        if not path.is_file():
            continue
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(4)
            dims = f.read(4 * header[3]) if len(header) == 4 else b""
        if len(header) < 4 or header[:2] != b"\0\0" or header[2] not in IDX_ITEM_BYTES or len(dims) < 4 * header[3]:
            return f"{path} is corrupt (not an idx file)"
        expected = 4 + len(dims) + IDX_ITEM_BYTES[header[2]] * math.prod(
            int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
        if size != expected:
            how = "truncated" if size < expected else "corrupt"
            return f"{path} is {how} ({size:,} bytes; its header says {expected:,})"
    return None


def found_nearby(expected: Path, markers: tuple[str, ...]) -> Optional[Path]:
    """A folder other than ``expected`` holding all of ``markers`` (the names that tell the dataset's
    folder), where the data lands when unpacked one folder too shallow (into the data root, the parent
    of ``expected``, itself), too deep (root/tiny-imagenet-200/tiny-imagenet-200) or beside the data root
    (into GMMVIT_DATA instead of GMMVIT_DATA/<dataset>); None when there is none."""
    root = expected.parent
    candidates = [root, *_folders_below(root, 2), *_folders_below(root.parent, 1)]
    for folder in candidates:
        if folder != expected and all((folder / m).exists() for m in markers):
            return folder
    return None


def _folders_below(folder: Path, depth: int) -> list[Path]:
    """The folders up to ``depth`` levels below ``folder``, nearest first (hidden ones left out)."""
    level, found = [folder], []
    for _ in range(depth):
        below = []
        for parent in level:
            try:
                entries = sorted(os.scandir(parent), key=lambda e: e.name)
            except OSError:
                continue
            below += [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]
        found += below
        level = below
    return found


def misplaced(name: str, expected: Path, found: Path, markers: tuple[str, ...]) -> DatasetUnavailable:
    """The one line for the data ``found_nearby`` found: where to move it. Found in a folder above
    ``expected`` (unpacked one too shallow), only the dataset's own files there are to move."""
    if expected.is_relative_to(found):
        files = ", ".join(str(found / m) for m in markers)
        return DatasetUnavailable(f"dataset {name} is not in {expected} but in {found} ({files}); move the "
                                  f"dataset's files there into {expected}")
    return DatasetUnavailable(f"dataset {name} is not in {expected} but in {found}; move what {found} holds into "
                              f"{expected}")


def unreadable_image(name: str, path: str, exc: BaseException, fix: str) -> DatasetUnavailable:
    """The one line for an image file PIL cannot read (truncated, not an image, unreadable)."""
    if isinstance(exc, UnidentifiedImageError):
        why = "not an image PIL can read"
    else:
        why = getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
    return DatasetUnavailable(f"dataset {name}: {path} cannot be read as an image ({why}); {fix}")
