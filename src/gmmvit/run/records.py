"""What a run leaves on disk: ``metrics.json`` (status, history, final figures) and checkpoints.

Every write is atomic (temporary file, then ``os.replace``), so a run killed at
any instant leaves either the old file or the new one, never half of one. The
previous checkpoint is kept as ``checkpoint.prev.pt`` to fall back on when the
last one is unreadable.

Checkpoints hold tensors and plain types only and are read with
``torch.load(weights_only=True)``: a checkpoint in a shared run folder cannot run
code in whoever resumes it. One that holds a pickled object is refused with one
line; ``python -m gmmvit.run.records upgrade RUN_DIR`` rewrites a trusted one written
by an earlier gmmvit (random states pickled as numpy arrays).
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from gmmvit.errors import CheckpointError, CommandLine, ConfigError, one_line_errors
from gmmvit.run.metrics_schema import read_metrics

METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_STOPPED = "stopped"  # Ctrl-C or SIGTERM: a clean stop
RESUME = "relaunch to resume"  # what to do with a stopped run, in every line that names one


# torch's weights-only unpickler names the class or function a file would have it import and call
_PICKLED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, opened for writing, as (fd, name). Created with mode 0666
    for the kernel to apply the umask (and a folder's default ACL) as it does for a plain ``open()``:
    ``tempfile.mkstemp``'s 0600 would hide metrics.json and the checkpoints from a shared group."""
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
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


def remove_temporaries(run_dir: Path) -> None:
    """The half-written temporary files of a trainer killed while writing (``_atomic_write``'s)."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def check_writable(folder) -> None:
    """Create ``folder`` and write a probe file in it; one line naming the fix when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); run from a writable "
            "checkout or point hydra.run.dir / hydra.sweep.dir at a writable folder") from None


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
        data, self.fault = read_metrics(self.path)  # fault: why the file there is not a record
        self.data: dict[str, Any] = data or {"status": None, "history": [], "final": {}}
        # the status this process wrote, None until it writes one: how a launch ends goes by this, not by
        # the status an earlier launch left (a relaunched failed run that fails again is failed anew)
        self.written_status: Optional[str] = None

    @property
    def status(self) -> Optional[str]:
        return self.data.get("status")

    @property
    def history(self) -> list[dict]:
        return self.data["history"]

    def update(self, **fields) -> None:
        self.data.update(fields)
        if "status" in fields:
            self.written_status = fields["status"]
        write_json(self.path, self.data)

    def add_epoch(self, row: dict) -> None:
        # a resumed run may replay an epoch whose row was written before the kill
        self.data["history"] = [r for r in self.history if r["epoch"] < row["epoch"]] + [row]
        write_json(self.path, self.data)

    def truncate(self, epochs_done: int) -> None:
        self.data["history"] = [r for r in self.history if r["epoch"] < epochs_done]


# --- configs recorded before the package was laid out by concern -------------------------------

# A run folder's config.yaml names the classes and functions it was built from (``_target_``). Those
# written before the layout name the old modules: read back, they name the same things.
MOVED_MODULES = {
    "gmmvit.models.vit": "gmmvit.nn.models.vit", "gmmvit.models.swin": "gmmvit.nn.models.swin",
    "gmmvit.models.cait": "gmmvit.nn.models.cait", "gmmvit.models.pit": "gmmvit.nn.models.pit",
    "gmmvit.models.t2t": "gmmvit.nn.models.t2t", "gmmvit.masks": "gmmvit.nn.masks",
    "gmmvit.data": "gmmvit.data.datasets", "gmmvit.bench": "gmmvit.bench.epoch",
}


def current_target(target: str) -> str:
    """``gmmvit.models.vit.ViT`` -> ``gmmvit.nn.models.vit.ViT``; any other path as it is."""
    module, _, name = str(target).rpartition(".")
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else target


def current_targets(config):
    """A recorded config (plain dicts and lists) with every ``_target_`` named as today."""
    if isinstance(config, dict):
        return {k: current_target(v) if k == "_target_" and isinstance(v, str) else current_targets(v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [current_targets(v) for v in config]
    return config


# Each config key added since runs were first recorded, with the value the runs recorded before it
# trained with (what their code did then), so an old run reads back as what it ran, not as unknown.
KEYS_ADDED = {
    "recipe.aug.ops": "torchvision",   # issue 18: the authors' AutoAugment ops and erasing became the default
    "dataset.val_fraction": 0.0,       # issue 19: the clean protocol's hold-out; before it, none
}


def with_keys_added(config: dict) -> dict:
    """A recorded config (plain dicts) with every key of ``KEYS_ADDED`` it lacks set to the value it
    trained with; only where the key's group was recorded (a config without ``recipe`` stays so)."""
    for key, value in KEYS_ADDED.items():
        *groups, leaf = key.split(".")
        node = config
        for group in groups:
            node = node.get(group) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return config


def read_back(config):
    """A recorded config as today's code reads it: targets named as today, keys added since filled in."""
    return with_keys_added(current_targets(config))


# --- random states as tensors and plain types ---------------------------------------------------

def _python_state(state: tuple) -> dict:
    version, words, gauss_next = state
    return {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next}


def _numpy_state(state: tuple) -> dict:
    kind, key, pos, has_gauss, cached = state
    return {"kind": kind, "key": torch.from_numpy(np.asarray(key).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def rng_state() -> dict:
    """Python's, numpy's and torch's random states, as tensors and plain types."""
    state = {"python": _python_state(random.getstate()), "numpy": _numpy_state(np.random.get_state()),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(w) for w in py["words"].tolist()), py["gauss_next"]))
    np.random.set_state((npy["kind"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_rng(rng: dict) -> dict:
    """An earlier gmmvit's random states (Python's tuple, numpy's array) as ``rng_state`` saves them."""
    out = dict(rng)
    if isinstance(rng.get("python"), tuple):
        out["python"] = _python_state(rng["python"])
    if isinstance(rng.get("numpy"), tuple):
        out["numpy"] = _numpy_state(rng["numpy"])
    return out


# --- checkpoints -----------------------------------------------------------------------------------

def save_tensors(path: Path, state: dict) -> None:
    """``state`` (tensors and plain types) written atomically to ``path``."""
    _atomic_write(Path(path), lambda f: torch.save(state, f))


def save_checkpoint(run_dir: Path, state: dict) -> None:
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT
    if last.exists():
        os.replace(last, run_dir / PREVIOUS_CHECKPOINT)
    _atomic_write(last, lambda f: torch.save(state, f))


def load_checkpoint(run_dir: Path) -> Optional[dict]:
    """The newest readable checkpoint (``newest_checkpoint``'s state), or None when the run has none yet."""
    found = newest_checkpoint(run_dir)
    return None if found is None else found[0]


def newest_checkpoint(run_dir: Path) -> Optional[tuple[dict, Path]]:
    """(state, the file it was read from) of the newest readable checkpoint, or None when the run has
    none yet.

    A corrupt last checkpoint falls back to the previous one; when no file is
    readable, ``CheckpointError`` says so instead of silently starting over. A
    checkpoint holding a pickled object (which loading would have to import and
    call) ends the run with ``CheckpointError`` rather than falling back: someone
    put it there.
    """
    run_dir = Path(run_dir)
    candidates = [run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT]
    present = [p for p in candidates if p.exists()]
    if not present:
        return None
    for path in present:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            pickled = _PICKLED_GLOBAL.search(str(exc))
            if pickled:
                raise CheckpointError(
                    f"{path} holds a pickled object ({pickled.group(1)}) that loading would run, so it is "
                    f"not loaded; if you wrote it with an earlier gmmvit and trust it, rewrite it once with "
                    f"`python -m gmmvit.run.records upgrade --trust {run_dir}`, else delete {run_dir} to retrain"
                ) from None
            print(f"[gmmvit] checkpoint {path} is unreadable; trying the previous one", flush=True)
            continue
        if isinstance(state, dict) and "epoch" in state:
            return state, path
    raise CheckpointError(
        f"every checkpoint in {run_dir} is corrupt; delete {run_dir} to retrain this run from scratch")


def upgrade_checkpoints(run_dir: Path, trust: bool = False) -> list[Path]:
    """Rewrite a run folder's checkpoints of an earlier gmmvit as tensors and plain types. Each is read
    with ``weights_only=True`` first; one that pickles an object is unpickled (running whatever it
    pickled) only with ``trust``, the user's word that they wrote it; else ``CheckpointError``."""
    done = []
    for path in (Path(run_dir) / CHECKPOINT, Path(run_dir) / PREVIOUS_CHECKPOINT):
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            pickled = _PICKLED_GLOBAL.search(str(exc))
            if pickled is None:
                raise CheckpointError(f"{path} is unreadable ({type(exc).__name__}); delete {run_dir} to retrain "
                                      "this run") from None
            if not trust:
                raise CheckpointError(
                    f"{path} holds a pickled object ({pickled.group(1)}) that loading would run; only if you "
                    f"wrote it with an earlier gmmvit, rewrite it with `python -m gmmvit.run.records upgrade "
                    f"--trust {run_dir}`") from None
            state = torch.load(path, map_location="cpu", weights_only=False)
        if "rng" in state:
            state["rng"] = _plain_rng(state["rng"])
        _atomic_write(path, lambda f: torch.save(state, f))
        torch.load(path, map_location="cpu", weights_only=True)  # proves the rewrite loads safely
        done.append(path)
    return done


def upgradable_run_dir(text: str) -> Path:
    """``upgrade``'s folder, refused in one line unless it is a run folder holding a checkpoint."""
    run_dir = Path(text)
    where = "give a run folder, multirun/SWEEP/RUN, that holds checkpoint.pt"
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} {'is a file, not a folder' if run_dir.exists() else 'does not exist'}; {where}")
    if not any((run_dir / name).is_file() for name in (CHECKPOINT, PREVIOUS_CHECKPOINT)):
        raise CheckpointError(f"{run_dir} holds no {CHECKPOINT} or {PREVIOUS_CHECKPOINT}, nothing to upgrade; "
                              f"{where}")
    return run_dir


@one_line_errors
def main(argv=None) -> int:
    parser = CommandLine(prog="python -m gmmvit.run.records")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandLine)
    upgrade = commands.add_parser("upgrade", help="rewrite a trusted run folder's checkpoints of an earlier "
                                  "gmmvit so that they load with weights_only=True")
    upgrade.add_argument("--trust", action="store_true", help="unpickle checkpoints that need it: they run "
                         "whatever they pickled, so only for files you wrote")
    upgrade.add_argument("run_dir")
    args = parser.parse_args(argv)
    for path in upgrade_checkpoints(upgradable_run_dir(args.run_dir), trust=args.trust):
        print(f"[gmmvit] rewrote {path} as tensors and plain types", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
