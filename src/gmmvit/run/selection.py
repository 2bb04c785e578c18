"""The run's best epoch and its weights, ``best.pt``: the model whose test top-1 ``make table`` reports,
in its default table for a run without a validation split, in its ``--select val`` table for one with.

The selection metric is the test top-1 (the authors' protocol: the best epoch is chosen on the test
set) or, with ``dataset.val_fraction > 0``, the top-1 on the held-out validation split. After every
epoch whose metric beats every earlier epoch's (the first of equal epochs is kept, as ``max`` keeps
it), ``best.pt`` is rewritten atomically with that epoch's weights and ``metrics.json`` records
``best`` = {epoch, metric, value, test_top1}. ``best.pt`` holds tensors and plain types only
(``torch.load(weights_only=True)``): {"epoch", "metric", "value", "model": state_dict}.

It is written after the epoch's checkpoint, so after a kill it is at most one epoch behind the
history the resumed run keeps; ``BestWeights.start`` mends that from the checkpoint's own weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from gmmvit.errors import CheckpointError
from gmmvit.run.progress import epoch_label
from gmmvit.run.records import CHECKPOINT, METRICS, PREVIOUS_CHECKPOINT, RunRecord, read_json, save_tensors

BEST = "best.pt"
TEST, VAL = "test_top1", "val_top1"


def selection_metric(cfg) -> str:
    """``val_top1`` when the run holds out a validation split, else ``test_top1`` (the paper's)."""
    return VAL if (cfg.dataset.get("val_fraction") or 0) > 0 else TEST


def best_row(history: list[dict], metric: str) -> Optional[dict]:
    """The first epoch with the highest ``metric`` (None before any epoch)."""
    rows = [r for r in history if r.get(metric) is not None]
    return max(rows, key=lambda r: r[metric]) if rows else None


def validation_figures(history: list[dict]) -> dict:
    """The clean protocol's figures of a run with a validation split: the best validation top-1, its
    epoch and the test top-1 at that epoch ({} without a split)."""
    best = best_row(history, VAL)
    if best is None:
        return {}
    return {"best_val_top1": best[VAL], "best_val_epoch": best["epoch"], "test_top1_at_best_val": best[TEST]}


def load_weights(path: Path) -> dict:
    """A weights file (``best.pt`` or a checkpoint) read with ``weights_only=True``; one line when it
    is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; choose CKPT=last, or train the run to write it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a weights-only checkpoint this gmmvit can read "
                              f"({type(exc).__name__}); retrain the run or pick the other checkpoint") from None


def recorded_metric(metrics: dict) -> str:
    """The selection metric a run's ``metrics.json`` says it chose ``best.pt`` by: its ``best``'s, else
    (a run from before ``best`` was recorded) ``val_top1`` when its epochs recorded one, as
    ``selection_metric`` chose it."""
    history = metrics.get("history") or []
    return ((metrics.get("best") or {}).get("metric")
            or (VAL if any(r.get(VAL) is not None for r in history) else TEST))


def best_from_checkpoints(run_dir: Path) -> tuple[dict, int, str]:
    """(weights, epoch, the file they came from) of a run without ``best.pt`` (one from before it
    existed, or it was deleted): the kept checkpoint holding the best epoch of its history, said in
    one line; else ``CheckpointError`` naming the best epoch, what is kept, and what to do."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / METRICS) or {}
    metric = recorded_metric(metrics)
    best = best_row(metrics.get("history") or [], metric)
    missing = f"{run_dir / BEST} is missing"
    if best is None:
        raise CheckpointError(f"{missing} and {run_dir / METRICS} records no epoch; train the run first")
    epochs = metrics.get("epochs")
    kept = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        try:
            state = torch.load(run_dir / name, map_location="cpu", weights_only=True)
        except Exception:  # absent or unreadable: it holds no epoch to offer
            continue
        epoch = state.get("epoch", 0) - 1  # a checkpoint holds the epoch to train next
        if epoch == best["epoch"]:
            print(f"[gmmvit] {missing}; evaluating {run_dir / name}, which holds the best epoch "
                  f"({epoch_label(epoch, epochs)}, {metric} {best[metric]:.2f})", flush=True)
            return state["model"], epoch, name
        kept.append(f"{name} holds {epoch_label(epoch, epochs)}")
    what = (f"{', '.join(kept)}; evaluate the last one with CKPT=last, or retrain the run to write best.pt" if kept
            else "no readable checkpoint is kept; retrain the run to write best.pt")
    raise CheckpointError(f"{missing}, and no kept checkpoint holds its best epoch "
                          f"({epoch_label(best['epoch'], epochs)}, {metric} {best[metric]:.2f}): {what}")


class BestWeights:
    def __init__(self, run_dir: Path, record: RunRecord, metric: str):
        self.path = Path(run_dir) / BEST
        self.record = record
        self.metric = metric
        self.value: Optional[float] = None

    def start(self, checkpoint: Optional[dict]) -> None:
        """Make ``best.pt`` agree with the history the run keeps (``checkpoint``: the state it resumes
        from, None for a fresh start)."""
        best = best_row(self.record.history, self.metric)
        if best is None:
            self.path.unlink(missing_ok=True)
            self.record.data.pop("best", None)
            return
        self.value = best[self.metric]
        held = load_weights(self.path).get("epoch") if self.path.is_file() else None
        if held == best["epoch"]:
            self._note(best)  # killed between best.pt and metrics.json
            return
        if checkpoint is not None and checkpoint["epoch"] == best["epoch"] + 1:
            self._write(best, checkpoint["model"])  # killed between the checkpoint and best.pt
            return
        # the best epoch's weights are gone (its checkpoint was unreadable): no best.pt until a better one
        self.path.unlink(missing_ok=True)
        self.record.update(best=None)
        print(f"[gmmvit] {self.path.parent.name}: the weights of the best epoch "
              f"({epoch_label(best['epoch'], self.record.data.get('epochs'))}) are lost; "
              f"best.pt returns with the next epoch above {self.metric} {self.value:.2f}", flush=True)

    def after_epoch(self, row: dict, model: torch.nn.Module) -> None:
        if self.value is None or row[self.metric] > self.value:
            self.value = row[self.metric]
            self._write(row, model.state_dict())

    def _write(self, row: dict, weights: dict) -> None:
        save_tensors(self.path, {"epoch": row["epoch"], "metric": self.metric, "value": row[self.metric],
                                 "model": {k: v.detach().cpu() for k, v in weights.items()}})
        self._note(row)

    def _note(self, row: dict) -> None:
        self.record.update(best={"epoch": row["epoch"], "metric": self.metric, "value": row[self.metric],
                                 "test_top1": row["test_top1"]})
