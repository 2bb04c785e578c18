"""What a user watches while a run trains.

``Progress``: on a terminal, a tqdm bar per epoch (steps, img/s, loss, the run's ETA); when the
output is not a terminal (SLURM logs, launcher workers, CI), one plain line at every ~10% of an
epoch (never one per step). The loss lives on the device: it is read on the host only when a
line or a bar refresh is due (at most once a second), so a GPU never stalls for it.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from typing import Optional, TextIO

LOG_LINES_PER_EPOCH = 10          # one line every ~10% of an epoch when the output is a log
MIN_STEPS_FOR_LOG_LINES = 2 * LOG_LINES_PER_EPOCH  # shorter epochs: the epoch line alone
LOSS_READ_EVERY_S = 1.0           # a bar reads the loss on the host at most this often


def duration(seconds: Optional[float]) -> str:
    """3725 -> '1h02m', 185 -> '3m05s', 12.4 -> '12s'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def epoch_count(index: int, epochs) -> str:
    """A recorded epoch index (``metrics.json``, ``best.pt`` and the results count from 0) as every line
    and table a user reads counts it, from 1: index 0 of 2 is ``1/2`` (``1`` where the total is unknown)."""
    return f"{index + 1}/{epochs}" if epochs else f"{index + 1}"


def epoch_label(index: int, epochs) -> str:
    return f"epoch {epoch_count(index, epochs)}"


def _top1(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)


def result_text(final: dict, epochs) -> str:
    """A finished run's result as every line states it (``metrics.json``'s ``final``): the best test
    top-1 and its epoch (the paper's selection), or, where the run holds out a validation split, the
    test top-1 at the best validation epoch (the clean protocol), which the test-selected number would
    contradict. Epochs counted as the epoch lines count them."""
    if final.get("best_val_epoch") is not None:
        return (f"test top-1 {_top1(final.get('test_top1_at_best_val'))} at the best val top-1 "
                f"{_top1(final.get('best_val_top1'))} ({epoch_label(final['best_val_epoch'], epochs)})")
    best = final.get("best_epoch")
    return f"best top-1 {_top1(final.get('best_top1'))} ({'none' if best is None else epoch_label(best, epochs)})"


def finished_line(name: str, final: dict, epochs: int) -> str:
    """The run's last log line: its result, then the last epoch's test top-1."""
    return f"[gmmvit] {name} finished: {result_text(final, epochs)}, final {final['final_top1']:.2f}"


def epoch_line(name: str, row: dict, epochs: int) -> str:
    """An epoch's log line (a row of ``metrics.json``'s history), with the validation top-1 the run
    selects on where it holds out a split."""
    val = f" val top-1 {row['val_top1']:.2f}" if "val_top1" in row else ""
    return (f"[gmmvit] {name} {epoch_label(row['epoch'], epochs)} loss {row['train_loss']:.4f} "
            f"top-1 {row['test_top1']:.2f}{val} lr {row['lr']:.2e} {row['img_per_s']:.0f} img/s")


def is_terminal(stream: TextIO) -> bool:
    """A bar only where one person watches one run: a terminal, in the launching process (the
    joblib/Ray workers of a multirun share their parent's terminal and would garble each other's bar)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and multiprocessing.current_process().name == "MainProcess"


class Progress:
    """Progress of one run's training epochs; called from the loop with the device-side loss sum.

    ``start_epoch(epoch)`` before an epoch's steps, ``step(seen, loss_sum)`` after each step (images
    seen and the summed loss this epoch, a device tensor or a float; the epoch ends with its last
    step), ``close()`` when the loop is left early.
    """

    def __init__(self, name: str, epochs: int, steps_per_epoch: int, start_epoch: int = 0,
                 stream: Optional[TextIO] = None, bar: Optional[bool] = None):
        self.name, self.epochs, self.steps = name, int(epochs), int(steps_per_epoch)
        self.stream = stream if stream is not None else sys.stderr
        self.bar_mode = is_terminal(self.stream) if bar is None else bar
        self.log_stream = sys.stdout if stream is None else stream
        self.marks = ({math.ceil(k * self.steps / LOG_LINES_PER_EPOCH) for k in range(1, LOG_LINES_PER_EPOCH)}
                      if self.steps >= MIN_STEPS_FOR_LOG_LINES else set())
        self.epoch = start_epoch
        self.bar = None
        self.step_i = 0
        self.epoch_t0 = self.train_s = None
        self.epoch_wall_s: Optional[float] = None    # last whole epoch: steps, evaluation, checkpoint
        self.eval_s = 0.0                             # its part after the last step
        self.loss_read_at = 0.0

    # --- the loop's three calls ----------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        now = time.monotonic()
        if self.epoch_t0 is not None and self.train_s is not None:
            self.epoch_wall_s = now - self.epoch_t0
            self.eval_s = max(self.epoch_wall_s - self.train_s, 0.0)
        self.close()
        self.epoch, self.step_i, self.epoch_t0, self.train_s = epoch, 0, now, None
        self.loss_read_at = 0.0
        if self.bar_mode:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.steps, desc=f"{self.name} {epoch + 1}/{self.epochs}", unit="step",
                            file=self.stream, leave=False, dynamic_ncols=True, mininterval=0.5)

    def step(self, seen: int, loss_sum) -> None:
        self.step_i += 1
        if self.bar is not None:
            self.bar.update(1)
            now = time.monotonic()
            if now - self.loss_read_at >= LOSS_READ_EVERY_S:
                self.loss_read_at = now
                self.bar.set_postfix_str(self._status(seen, loss_sum, now), refresh=False)
        elif self.step_i in self.marks:
            now = time.monotonic()
            pct = round(100 * self.step_i / self.steps)
            print(f"[gmmvit] {self.name} {epoch_label(self.epoch, self.epochs)} {pct:3d}% "
                  f"({self.step_i}/{self.steps} steps) {self._status(seen, loss_sum, now)}",
                  file=self.log_stream, flush=True)
        if self.step_i == self.steps:
            self.train_s = time.monotonic() - self.epoch_t0
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # --- figures ------------------------------------------------------------------------------
    def eta_s(self, now: float) -> Optional[float]:
        """Seconds until the run's last epoch ends, at this epoch's pace and the last epoch's
        evaluation time."""
        elapsed = now - self.epoch_t0
        if self.step_i == 0 or elapsed <= 0:
            return None
        step_s = elapsed / self.step_i
        this_epoch = (self.steps - self.step_i) * step_s + self.eval_s
        per_epoch = self.epoch_wall_s if self.epoch_wall_s is not None else self.steps * step_s + self.eval_s
        return this_epoch + max(self.epochs - self.epoch - 1, 0) * per_epoch

    def _status(self, seen: int, loss_sum, now: float) -> str:
        loss = float(loss_sum) / max(seen, 1)          # the one host read of the device loss
        rate = seen / max(now - self.epoch_t0, 1e-9)
        return f"loss {loss:.4f} {rate:.0f} img/s ETA {duration(self.eta_s(now))}"
