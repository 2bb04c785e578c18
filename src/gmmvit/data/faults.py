"""What can be wrong with a dataset's files on disk, each as one line naming the path and the fix
(``DatasetUnavailable``): a data folder that is a file, a folder that cannot be written where the data
must be downloaded or unpacked, a file that is there but damaged (its checksum is not the dataset's)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Iterable, Optional

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
        if not check_integrity(str(path), md5):
            return f"{path} is corrupt (its checksum is not the dataset's)"
    return None
