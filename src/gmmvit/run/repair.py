"""A run's record is never silently reset: a ``metrics.json`` that cannot be read, or that records
fewer epochs than its checkpoint holds, is rebuilt from the history the checkpoint carries (one line
saying so, the old file kept beside it) or the run is refused in one line naming the file and the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from gmmvit.errors import CheckpointError
from gmmvit.run.metrics_schema import problem
from gmmvit.run.records import STATUS_STOPPED, RunRecord, load_checkpoint, write_json


def keep_aside(path: Path) -> Path:
    """A copy of ``path`` under a name no earlier copy has: ``metrics.json.unreadable-1``..."""
    n = 1
    while path.with_name(f"{path.name}.unreadable-{n}").exists():
        n += 1
    kept = path.with_name(f"{path.name}.unreadable-{n}")
    shutil.copy2(path, kept)
    return kept


def checkpoint_rows(state: dict) -> Optional[list]:
    """The history rows a checkpoint carries up to its epoch, or None (an older checkpoint, or rows of
    the wrong shape)."""
    rows = state.get("history")
    if not isinstance(rows, list) or problem({"history": rows}):
        return None
    rows = [r for r in rows if r["epoch"] < state["epoch"]]
    return rows if [r["epoch"] for r in rows] == list(range(state["epoch"])) else None


def _fix(record: RunRecord) -> str:
    return f"restore {record.path} from a backup, or delete {record.run_dir} to retrain this run from scratch"


def usable_record(record: RunRecord) -> RunRecord:
    """``record`` when its file has the shape of a record (or there is none yet); else the record
    rebuilt from the checkpoint's history, or ``CheckpointError``."""
    if record.fault is None:
        return record
    state = load_checkpoint(record.run_dir)
    if state is None:
        raise CheckpointError(f"{record.path} {record.fault} and {record.run_dir} has no checkpoint to rebuild "
                              f"it from: {_fix(record)}")
    rows = checkpoint_rows(state)
    if rows is None:
        raise CheckpointError(f"{record.path} {record.fault}, and the checkpoint (epoch {state['epoch']}) holds "
                              f"no history to rebuild it from: {_fix(record)}")
    kept = keep_aside(record.path)
    write_json(record.path, {"status": STATUS_STOPPED, "reason": f"rebuilt from its checkpoint ({record.fault})",
                             "history": rows, "final": {}})
    print(f"[gmmvit] {record.path} {record.fault}: rebuilt from the checkpoint's {len(rows)} epochs "
          f"(the old file kept as {kept.name})", flush=True)
    return RunRecord(record.run_dir)


def continue_from(record: RunRecord, state: dict) -> None:
    """The record's history cut to the checkpoint's epoch N: rows 0..N-1, rebuilt from the checkpoint
    when the record has fewer, else ``CheckpointError``; never a resume with epochs missing."""
    epoch = state["epoch"]
    record.truncate(epoch)
    recorded = [r["epoch"] for r in record.history]
    if recorded == list(range(epoch)):
        return
    rows = checkpoint_rows(state)
    if rows is None:
        raise CheckpointError(f"the checkpoint of {record.run_dir} is at epoch {epoch} but {record.path} records "
                              f"{len(recorded)} of those epochs: {_fix(record)}")
    kept = keep_aside(record.path)
    record.data["history"] = rows
    print(f"[gmmvit] {record.path} records {len(recorded)} of the checkpoint's {epoch} epochs: history rebuilt "
          f"from the checkpoint (the old file kept as {kept.name})", flush=True)
