"""How a trainer ends is written down before its lock goes, so that every reader tells the truth at
once: ``finished`` (train.py), ``failed`` with its reason (NaN, an exception), ``stopped`` (Ctrl-C,
SIGTERM), and its W&B run ends the same way. A run killed outright (SIGKILL, OOM, node lost) cannot
write; its lock tells instead (``gmmvit.run.runlock``)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from gmmvit.errors import USER_ERRORS
from gmmvit.run.records import RESUME, STATUS_FAILED, STATUS_FINISHED, STATUS_STOPPED, RunRecord

# the shell's codes for a process ended by the signal: 128 + its number
EXIT_CODE = {"Ctrl-C": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


def _raise_terminated(signum, frame):
    raise Terminated


def reason_of(exc: BaseException) -> str:
    """An exception as one line of a run's record: the user error behind a wrapper (Hydra's
    instantiate wraps a dataset's ``DatasetUnavailable``) as the user saw it."""
    cause = exc
    while cause is not None and not isinstance(cause, USER_ERRORS):
        cause = cause.__cause__
    exc = cause or exc
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# the signals that stop a trainer: Ctrl-C, SIGTERM, and submitit's requeue signal under SLURM
_STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, name))


@contextmanager
def signals_held():
    """Around writing one epoch (its metrics row, W&B, checkpoint and best.pt): a stop that arrives
    meanwhile waits until all of them are written, so the stop line, ``metrics.json`` and the
    checkpoint name the same epoch and a resume retrains none of it. A second one of the same signal
    goes through at once, should a write hang. Only signals the process handles in Python are held
    (Ctrl-C, our SIGTERM, submitit's handlers); a default action (kill) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    before = {s: signal.getsignal(s) for s in _STOPPING if callable(signal.getsignal(s))}

    def hold(signum, frame):
        if signum in pending:  # asked twice: go through now
            before[signum](signum, frame)
        pending.append(signum)

    for s in before:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    for s in pending:
        signal.raise_signal(s)


def epochs_done(record: RunRecord) -> int:
    return len(record.history)


def _end_tracker(trackers: dict, record: RunRecord, exit_code: int) -> None:
    tracker = trackers.pop(record.run_dir, None)
    if tracker is not None:
        tracker.end(record.status, record.data.get("reason"), exit_code)


def _where_each_stopped(ends: list[tuple[RunRecord, int]]) -> str:
    """`` at epoch 2/10`` for one run; for a fused group, each member by its folder's name, since a
    member may have ended (finished, diverged) before the others stopped."""
    if len(ends) == 1:
        return f" at epoch {epochs_done(ends[0][0])}/{ends[0][1]}"
    return ": " + ", ".join(_where_stopped(record, epochs) for record, epochs in ends)


def _where_stopped(record: RunRecord, epochs: int) -> str:
    if record.status in (STATUS_FINISHED, STATUS_FAILED):
        return f"{record.run_dir.name} {record.status}"
    return f"{record.run_dir.name} at epoch {epochs_done(record)}/{epochs}"


@contextmanager
def recorded_end(ends: list[tuple[RunRecord, int]], name: str):
    """Around training one run or a fused group (``ends``: each run's record and its epochs; ``name``
    says which in the one line): Ctrl-C and SIGTERM record ``stopped`` for every run not yet ended and
    exit with the shell's code after one line; any other exception records ``failed`` with its reason
    and goes on up. SIGTERM is taken only where nobody else handles it (submitit, under SLURM, has its
    own plan for it).

    It yields a dict, run folder -> tracker, for training to put each run's tracker in once built:
    a run that stops or fails ends its W&B run with its record's status and reason and a non-zero exit
    code (W&B would otherwise close it at exit, or at the next job's start, as finished)."""
    own_sigterm = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    if own_sigterm:
        signal.signal(signal.SIGTERM, _raise_terminated)
    # a run ended in this launch keeps its end; one that a previous launch ended failed is open again
    open_ends = lambda: [(r, n) for r, n in ends  # noqa: E731
                         if r.written_status not in (STATUS_FINISHED, STATUS_FAILED)]
    trackers: dict = {}
    try:
        yield trackers
    except (KeyboardInterrupt, Terminated) as exc:
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        for record, epochs in open_ends():
            record.update(status=STATUS_STOPPED, reason=f"{how} at epoch {epochs_done(record)}/{epochs}")
            _end_tracker(trackers, record, EXIT_CODE[how])
        print(f"\n[gmmvit] {name} stopped{_where_each_stopped(ends)}; {RESUME}", flush=True)
        raise SystemExit(EXIT_CODE[how]) from None
    except Exception as exc:
        for record, _ in open_ends():
            record.update(status=STATUS_FAILED, reason=reason_of(exc))
            _end_tracker(trackers, record, 1)
        raise
    finally:
        if own_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
