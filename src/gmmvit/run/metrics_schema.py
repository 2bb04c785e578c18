"""The shape of a run's ``metrics.json``, checked wherever one is read: the trainer continues only a
record of this shape, and the readers list a folder whose record is not as unreadable, with why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

STATUSES = (None, "running", "finished", "failed", "stopped")
# key: the types its value may have (None: absent or null)
FIELDS = {"status": (str, type(None)), "reason": (str, type(None)), "history": (list,), "final": (dict,),
          "epochs": (int, type(None)), "meta": (dict, type(None)), "params": (int, type(None)),
          "macs": (int, type(None)), "paths": (dict, type(None)), "wandb_id": (str, type(None))}
# a history row's seconds, fused or not: train_s, the epoch's training steps (a fused group's, the same
# for each member); eval_s, this run's own test evaluation; epoch_s = train_s + eval_s, so a member's
# epoch is never charged with the evaluation of the members before it
ROW_NUMBERS = ("train_loss", "test_top1", "lr", "img_per_s", "train_s", "eval_s", "epoch_s")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(data) -> Optional[str]:
    """What is wrong with a parsed record, in a few words; None when it has the shape."""
    if not isinstance(data, dict):
        return f"a {type(data).__name__} where a record (an object) should be"
    for key, kinds in FIELDS.items():
        value = data.get(key)
        if key in data and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f"{key} is {json.dumps(value)[:40]}"
    if data.get("status") not in STATUSES:
        return f"status is {data['status']!r}"
    last = -1
    for i, row in enumerate(data.get("history", [])):
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int) or isinstance(row["epoch"], bool):
            return f"history row {i} has no whole-number epoch"
        if row["epoch"] <= last:
            return f"history row {i} (epoch {row['epoch']}) is not after epoch {last}"
        last = row["epoch"]
        bad = [k for k in ROW_NUMBERS if k in row and not _number(row[k]) and row[k] is not None]
        if bad:
            return f"history row {i} has a {bad[0]} that is not a number"
    for key in ("best_top1", "final_top1"):
        value = (data.get("final") or {}).get(key)
        if value is not None and not _number(value):
            return f"final.{key} is not a number"
    return None


def read_metrics(path: Path) -> tuple[Optional[dict], Optional[str]]:
    """(record, None) for a well-shaped file, (None, None) when there is none, (None, why) else."""
    path = Path(path)
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"is not valid JSON ({'empty' if not text.strip() else exc.msg} at byte {getattr(exc, 'pos', 0)})"
    why = problem(data)
    return (None, f"has the wrong shape: {why}") if why else (data, None)
