"""What a run leaves on disk: ``metrics.json`` (status, history, final figures) and checkpoints.

Every write is atomic (temporary file, then ``os.replace``), so a run killed at
any instant leaves either the old file or the new one, never half of one. The
previous checkpoint is kept as ``checkpoint.prev.pt`` to fall back on when the
last one is unreadable.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"


class CheckpointError(RuntimeError):
    """No usable checkpoint where one should be; the message says what to do."""


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: dict) -> None:
    _atomic_write(Path(path), lambda f: f.write(json.dumps(data, indent=2, default=float).encode()))


def read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


class RunRecord:
    """The run's ``metrics.json``: status, per-epoch history, final figures."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS
        self.data: dict[str, Any] = read_json(self.path) or {"status": None, "history": [], "final": {}}

    @property
    def status(self) -> Optional[str]:
        return self.data.get("status")

    @property
    def history(self) -> list[dict]:
        return self.data["history"]

    def update(self, **fields) -> None:
        self.data.update(fields)
        write_json(self.path, self.data)

    def add_epoch(self, row: dict) -> None:
        # a resumed run may replay an epoch whose row was written before the kill
        self.data["history"] = [r for r in self.history if r["epoch"] < row["epoch"]] + [row]
        write_json(self.path, self.data)

    def truncate(self, epochs_done: int) -> None:
        self.data["history"] = [r for r in self.history if r["epoch"] < epochs_done]


def save_checkpoint(run_dir: Path, state: dict) -> None:
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT
    if last.exists():
        os.replace(last, run_dir / PREVIOUS_CHECKPOINT)
    _atomic_write(last, lambda f: torch.save(state, f))


def load_checkpoint(run_dir: Path) -> Optional[dict]:
    """The newest readable checkpoint, or None when the run has none yet.

    A corrupt last checkpoint falls back to the previous one; when no file is
    readable, ``CheckpointError`` says so instead of silently starting over.
    """
    run_dir = Path(run_dir)
    candidates = [run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT]
    present = [p for p in candidates if p.exists()]
    if not present:
        return None
    for path in present:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception:
            print(f"[gmmvit] checkpoint {path} is unreadable; trying the previous one", flush=True)
            continue
        if isinstance(state, dict) and "epoch" in state:
            return state
    raise CheckpointError(
        f"every checkpoint in {run_dir} is corrupt; delete {run_dir} to retrain this run from scratch")
