"""Which device a run trains on, and GPU slots shared by the runs of one machine.

Runs started side by side on one machine (``hydra/launcher=local_gpus``, or several shells) must
not all land on ``cuda:0``. With ``device=auto`` a run that sees several GPUs, or that is told to
share one (``runs_per_gpu`` > 1), claims a slot: one of ``runs_per_gpu`` places on one of the
visible GPUs, held by an advisory file lock (``fcntl.flock``) in a folder every run of the machine
uses. The kernel drops the lock with the process, however it ends, so a crashed run frees its
slot. Slots are named by the GPU's UUID: jobs that see different GPUs as ``cuda:0`` (SLURM, Ray)
never wait for each other. Claims fill every GPU's first slot before any second one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Optional, Sequence

import torch

from gmmvit.errors import ConfigError

POLL_S = 5.0
_held: Optional[tuple[int, IO]] = None  # this process's slot: (GPU index, its locked file)


def slot_folder() -> Path:
    """Where the slot locks live: ``$GMMVIT_GPU_SLOTS``, or a per-user folder in the temp dir."""
    folder = os.environ.get("GMMVIT_GPU_SLOTS") or Path(tempfile.gettempdir()) / f"gmmvit-gpu-slots-{os.getuid()}"
    return Path(folder)


def try_claim(names: Sequence[str], per_device: int, folder: Path) -> Optional[tuple[int, IO]]:
    """Lock a free slot without waiting: ``(index into names, the open locked file)``, or None."""
    folder.mkdir(parents=True, exist_ok=True)
    for place in range(per_device):
        for index, name in enumerate(names):
            handle = open(folder / f"{name}.slot{place}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return index, handle
    return None


def claim(names: Sequence[str], per_device: int, folder: Path, poll_s: float = POLL_S) -> tuple[int, IO]:
    """Lock a free slot, waiting for one when all are taken."""
    waited = False
    while True:
        got = try_claim(names, per_device, folder)
        if got is not None:
            return got
        if not waited:
            print(f"[gmmvit] all {len(names)} GPU(s) x {per_device} run(s) busy (slots in {folder}); "
                  "waiting for one to free", flush=True)
            waited = True
        time.sleep(poll_s)


def gpu_names() -> list[str]:
    names = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        names.append(f"GPU-{uuid}" if uuid is not None else f"cuda{i}")
    return names


def check_runs_per_gpu(runs_per_gpu) -> int:
    if not isinstance(runs_per_gpu, int) or isinstance(runs_per_gpu, bool) or runs_per_gpu < 1:
        raise ConfigError(f"runs_per_gpu must be a whole number >= 1, got {runs_per_gpu!r}")
    return runs_per_gpu


def pick_device(name: str, runs_per_gpu: int = 1) -> torch.device:
    """``device``: auto = a GPU slot when CUDA is there (see the module doc), else the CPU; or a
    torch device string taken as is."""
    global _held
    runs_per_gpu = check_runs_per_gpu(runs_per_gpu)
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if _held is None:
        names = gpu_names()
        if len(names) == 1 and runs_per_gpu == 1:
            return torch.device("cuda", 0)
        _held = claim(names, runs_per_gpu, slot_folder())
    torch.cuda.set_device(_held[0])
    return torch.device("cuda", _held[0])


def gpu_slots(runs_per_gpu=1) -> int:
    """How many runs this machine trains at once: visible GPUs x ``runs_per_gpu`` (1 without a GPU).
    The ``gpu_slots`` resolver: ``hydra/launcher=local_gpus`` uses it as joblib's ``n_jobs``."""
    runs_per_gpu = check_runs_per_gpu(runs_per_gpu)
    return max(torch.cuda.device_count(), 1) * runs_per_gpu


def loader_workers(setting, device: torch.device, runs_per_gpu: int = 1) -> int:
    """``workers``: auto = none on CPU (the main process is faster for these small images); on a GPU,
    up to 8 processes, the machine's cores shared among the runs it trains at once."""
    if setting != "auto":
        return int(setting)
    if device.type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // gpu_slots(runs_per_gpu)))


__all__ = ["pick_device", "gpu_slots", "loader_workers", "try_claim", "claim", "slot_folder", "POLL_S"]
