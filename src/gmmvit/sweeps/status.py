"""``make status``: every run of a sweep with its epochs done, its pace and ETA, and the sweep's ETA
at the pace of the runs going on now (from metrics.json, no W&B).

    python -m gmmvit.sweeps.status [SWEEP_DIR ...]      # make status [SWEEP=multirun/NAME]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Optional

from gmmvit.catalog import MULTIRUN
from gmmvit.errors import CommandLine, one_line_errors
from gmmvit.run.progress import duration, result_text
from gmmvit.sweeps.cells import assign_variants
from gmmvit.sweeps.expand import saved_fused_size, saved_job_folders
from gmmvit.sweeps.folders import STATES, collect_sweeps, is_run_dir, stopped_detail


def sweep_name(folder: Path) -> str:
    """A sweep as it was launched: ``sweep=ablation/pooling`` is ``multirun/ablation/pooling``."""
    try:
        return folder.resolve().relative_to(MULTIRUN.resolve()).as_posix()
    except ValueError:
        return folder.name


def run_eta(metrics: dict) -> Optional[float]:
    """Seconds a run still needs at its median epoch time (None before its first epoch)."""
    history = metrics.get("history") or []
    times = [r["epoch_s"] for r in history if r.get("epoch_s")]
    if not times or not metrics.get("epochs"):
        return None
    return max(metrics["epochs"] - len(history), 0) * statistics.median(times)


def run_detail(run, metrics: dict) -> str:
    """A run's state in words (run: ``gmmvit.sweeps.folders.Run``, None for a job not started), the same in
    ``make status`` and ``make paper DRY=1``."""
    if run is None:
        return "not started"
    done, total = len(metrics.get("history") or []), metrics.get("epochs") or run.epochs
    if run.state == "running":
        where = f" ({run.trainer})" if run.trainer else ""
        return f"running {done}/{total or '?'} epochs, ETA {duration(run_eta(metrics))}{where}"
    if run.state == "finished":
        return f"finished, {result_text(metrics.get('final') or {}, total)}"
    if run.state == "failed":
        return f"failed: {metrics.get('reason')}"
    if run.state == "stopped":
        return stopped_detail(run)
    if run.state == "unreadable":
        return f"unreadable: {run.reason}"
    return "not started"


def sweep_status(folder: Path, runs: list, now: Optional[float] = None) -> str:
    """The text ``make status`` prints for one sweep (runs: ``gmmvit.sweeps.folders.Run``)."""
    now = time.time() if now is None else now
    lines, left, full_runs = [], [], []
    counts = dict.fromkeys((*STATES, "todo"), 0)
    assign_variants([r for r in runs if r.state != "unreadable"])  # an ablation's runs differ by these alone
    width = max([36, *(len(r.label) for r in runs)])
    for run in sorted(runs, key=lambda r: r.label):
        m = run.metrics
        total = m.get("epochs")
        times = [r["epoch_s"] for r in m.get("history") or [] if r.get("epoch_s")]
        if times and total:
            full_runs.append(total * statistics.median(times))
        state = run.state if run.state in counts else "todo"
        counts[state] += 1
        pace = f"{statistics.median(times):.3g} s/epoch" if times else ""
        if state == "running":
            left.append(run_eta(m))
        lines.append(f"  {run.label:<{width}} {run_detail(run, m):<44} {pace:>14}  {run.path.name}")
    not_started = sum(not is_run_dir(folder / name) for name in saved_job_folders(folder) or [])
    counts["todo"] += not_started
    typical = statistics.median(full_runs) if full_runs else None
    work = [e for e in left if e is not None]
    work += [typical] * (not_started + counts["stopped"]) if typical else []
    # nothing running: a relaunch trains as the sweep was launched, fused=G in groups of G at once
    fused = 1 if counts["running"] else saved_fused_size(folder)
    in_flight = counts["running"] or min(fused, max(len(work), 1))
    unknown = typical is None and (not_started + counts["stopped"]) > 0
    eta = None if unknown or any(e is None for e in left) or not work else sum(work) / in_flight
    jobs = len(runs) + not_started
    head = f"{sweep_name(folder)} ({folder}): {jobs} run{'' if jobs == 1 else 's'}" + (
        f" ({not_started} not started yet)" if not_started else "")
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if counts["finished"] == jobs:
        tail = "sweep finished"
    elif eta is None:   # no pace to count the work left by; "0s" would say the sweep is done
        tail = "sweep ETA unknown" + (" (fix or delete the unreadable runs)" if counts["unreadable"] else "")
    elif not counts["running"]:  # a stopped sweep goes on only when relaunched, as it was launched
        at_once = "one run at a time" if in_flight == 1 else f"{in_flight} runs at a time (fused={fused}, as launched)"
        tail = f"sweep ETA {duration(eta)} once relaunched, {at_once} (none is running now)"
    else:
        tail = f"sweep ETA {duration(eta)} at {in_flight} run{'' if in_flight == 1 else 's'} at a time"
    return "\n".join([head, *lines, f"{summary}; {tail}"]) + "\n"


@one_line_errors
def main(argv=None) -> int:
    ap = CommandLine(prog="python -m gmmvit.sweeps.status", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="*", default=["multirun"], help="sweep folders, or folders of sweeps")
    args = ap.parse_args(argv)
    for folder, runs in collect_sweeps([Path(p) for p in args.sweeps]).items():
        print(sweep_status(folder, runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
