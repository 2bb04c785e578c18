"""What a user watches while a run or a sweep trains, and ``make status``.

    python -m gmmvit.progress [SWEEP_DIR ...]      # make status [SWEEP=multirun/NAME]

``Progress``: on a terminal, a tqdm bar per epoch (steps, img/s, loss, the run's ETA); when the
output is not a terminal (SLURM logs, launcher workers, CI), one plain line at every ~10% of an
epoch (never one per step). The loss lives on the device: it is read on the host only when a
line or a bar refresh is due (at most once a second), so a GPU never stalls for it.

``JobAnnouncer`` (a Hydra callback): "job 3/12: <overrides>" as each job of a multirun starts.

``make status``: every run of a sweep with its epochs done, its pace and ETA, and the sweep's
ETA at the pace of the runs going on now (from metrics.json, no W&B).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

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
            print(f"[gmmvit] {self.name} epoch {self.epoch + 1}/{self.epochs} {pct:3d}% "
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


# --- multirun: which job of how many ---------------------------------------------------------------

def sweep_size(sweep_dir: Path) -> Optional[int]:
    """Jobs in the multirun whose ``multirun.yaml`` Hydra saved in ``sweep_dir``, or None."""
    from gmmvit.cli import sweep_jobs

    try:
        jobs = sweep_jobs(OmegaConf.load(Path(sweep_dir) / "multirun.yaml"))
    except Exception:           # a glob over a config group, no file: no total
        return None
    return None if jobs is None else len(jobs)


class JobAnnouncer(Callback):
    """Hydra callback: each multirun job says which one of how many it is, as it starts."""

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.types import RunMode

        hydra_cfg = config.hydra
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        total = sweep_size(Path(hydra_cfg.sweep.dir))
        of = f"/{total}" if total else ""
        print(f"[gmmvit] job {hydra_cfg.job.num + 1}{of}: {hydra_cfg.job.override_dirname or 'defaults'}",
              flush=True)


# --- make status -----------------------------------------------------------------------------------

def run_eta(metrics: dict) -> Optional[float]:
    """Seconds a run still needs at its median epoch time (None before its first epoch)."""
    history = metrics.get("history") or []
    times = [r["epoch_s"] for r in history if r.get("epoch_s")]
    if not times or not metrics.get("epochs"):
        return None
    return max(metrics["epochs"] - len(history), 0) * statistics.median(times)


def run_detail(run, metrics: dict) -> str:
    """A run's state in words (run: ``gmmvit.table.Run``, None for a job not started), the same in
    ``make status`` and ``make paper DRY=1``."""
    if run is None:
        return "not started"
    done, total = len(metrics.get("history") or []), metrics.get("epochs") or run.epochs
    if run.state == "running":
        where = f" ({run.trainer})" if run.trainer else ""
        return f"running {done}/{total or '?'} epochs, ETA {duration(run_eta(metrics))}{where}"
    if run.state == "finished":
        return f"finished, best top-1 {metrics.get('final', {}).get('best_top1', math.nan):.2f}"
    if run.state == "failed":
        return f"failed: {metrics.get('reason')}"
    if run.state == "incomplete":
        return f"stopped at {done}/{total or '?'} epochs (relaunch to resume)"
    return "not started"


def sweep_status(folder: Path, runs: list, now: Optional[float] = None) -> str:
    """The text ``make status`` prints for one sweep (runs: ``gmmvit.table.Run``)."""
    from gmmvit.records import METRICS, read_json

    now = time.time() if now is None else now
    lines, left, full_runs = [], [], []
    counts = {"finished": 0, "running": 0, "failed": 0, "incomplete": 0, "todo": 0}
    for run in sorted(runs, key=lambda r: r.label):
        m = read_json(run.path / METRICS) or {}
        total = m.get("epochs")
        times = [r["epoch_s"] for r in m.get("history") or [] if r.get("epoch_s")]
        if times and total:
            full_runs.append(total * statistics.median(times))
        state = run.state if run.state in counts else "todo"
        counts[state] += 1
        pace = f"{statistics.median(times):.3g} s/epoch" if times else ""
        if state == "running":
            left.append(run_eta(m))
        lines.append(f"  {run.label:<36} {run_detail(run, m):<44} {pace:>14}  {run.path.name}")
    expected = sweep_size(folder)
    not_started = max((expected or 0) - len(runs), 0)
    counts["todo"] += not_started
    in_flight = max(counts["running"], 1)
    typical = statistics.median(full_runs) if full_runs else None
    work = [e for e in left if e is not None]
    work += [typical] * (not_started + counts["incomplete"]) if typical else []
    unknown = typical is None and (not_started + counts["incomplete"]) > 0
    eta = None if unknown or any(e is None for e in left) else sum(work) / in_flight
    head = f"{folder.name} ({folder}): {len(runs) + not_started} runs" + (
        f" ({not_started} not started yet)" if not_started else "")
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    tail = (f"sweep ETA {duration(eta)} at {in_flight} run(s) at a time" if counts["finished"] < len(runs) + not_started
            else "sweep finished")
    return "\n".join([head, *lines, f"{summary}; {tail}"]) + "\n"


def main(argv=None) -> int:
    from gmmvit.table import collect_sweeps

    ap = argparse.ArgumentParser(prog="python -m gmmvit.progress", description="make status: " + __doc__.split("\n\n")[3])
    ap.add_argument("sweeps", nargs="*", default=["multirun"], help="sweep folders, or folders of sweeps")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.sweeps]
    sweeps = collect_sweeps(paths, "gmmvit.progress")
    if not sweeps:
        return 1
    for folder, runs in sweeps.items():
        print(sweep_status(folder, runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
