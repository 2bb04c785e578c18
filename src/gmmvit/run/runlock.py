"""One trainer per run folder: ``<run_dir>/trainer.lock`` names the process training it.

A double-submitted SLURM array, a relaunch while the first sweep still runs, or two ``make paper``
on one box would otherwise train the same run twice at once into the same folder. The first
process creates the lock file (``O_EXCL``: exactly one creator, also on NFS), writes its host, pid
and start time into it, holds a ``fcntl.flock`` on it and touches it every ``HEARTBEAT_S`` seconds.
Another launch of the run reads the file and skips the run with one line; the sweep goes on.

Whether the holder still lives:

* same host: the kernel drops the flock when the holder's process ends, however it ends (SIGKILL,
  OOM), so a lock file nobody holds is a dead holder's; where the filesystem has no flock, a pid
  that no longer exists;
* another host (a shared filesystem, where flock may not reach across machines): the heartbeat,
  i.e. the file's modification time, older than ``STALE_S``;
* the same SLURM job (a preempted or timed-out job requeued, maybe onto another node): SLURM runs
  one instance of a job at a time, so its earlier one is gone.

A dead holder's lock is taken over with a line saying so. The takeover itself happens under the
flock of the dead holder's file, so two relaunches on one host cannot both take it over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

LOCK = "trainer.lock"
HEARTBEAT_S = 30.0
STALE_S = 600.0  # 20 missed heartbeats: a holder on another host that stays silent this long is dead
_FLOCK_WAIT_S = 2.0  # a reader may hold the new file's flock for an instant while it inspects it


class Held(Exception):
    """The run is being trained by another live process; the message names it."""


def _now_text(t: float) -> str:
    return datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def _flock(fd: int) -> Optional[bool]:
    """Take the exclusive flock without waiting: True, False when another process holds it, None
    when this filesystem has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _slurm_job() -> Optional[str]:
    return os.environ.get("SLURM_JOB_ID")


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}


def describe(holder: dict, heartbeat: float) -> str:
    if not holder:
        return f"a process starting at {_now_text(heartbeat)}"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since "
            f"{_now_text(holder.get('started', heartbeat))}")


class RunLock:
    """The held lock of one run folder: ``release()`` (or leaving the ``with`` block) frees it."""

    def __init__(self, path: Path, fd: int, heartbeat_s: float):
        self.path, self.fd = path, fd
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_s,), daemon=True,
                                      name="gmmvit-run-lock-heartbeat")
        self._beat.start()

    def _heartbeat(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                os.utime(self.fd)
            except OSError:
                pass  # a transient error of a shared filesystem; the next beat tries again

    def release(self) -> None:
        if self.fd < 0:
            return
        self._stop.set()
        self._beat.join()
        try:
            os.unlink(self.path)  # before the flock goes: a waiter then finds the path free
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(run_dir: Path, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S,
            log=print) -> RunLock:
    """Hold ``run_dir``'s lock, taking over a dead holder's; ``Held`` when a live process trains it."""
    path = Path(run_dir) / LOCK
    host = socket.gethostname()
    while True:
        try:
            # 0666 for the umask to narrow, as for the run's other files: a group sharing the sweep must
            # be able to open a dead holder's lock read-write to take it over
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            _inspect(path, host, stale_s, log)
            continue
        deadline = time.time() + _FLOCK_WAIT_S
        while _flock(fd) is False and time.time() < deadline:
            time.sleep(0.05)
        started = time.time()
        os.write(fd, json.dumps({"host": host, "pid": os.getpid(), "started": started,
                                 "slurm_job": _slurm_job()}).encode())
        os.fsync(fd)
        return RunLock(path, fd, heartbeat_s)


def _inspect(path: Path, host: str, stale_s: float, log) -> None:
    """The lock file exists: raise ``Held`` if its holder lives, else remove it (a dead holder's)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return  # released meanwhile
    try:
        locked = _flock(fd)
        heartbeat = os.fstat(fd).st_mtime
        holder = _read_holder(fd)
        if locked is False:
            raise Held(describe(holder, heartbeat))
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return  # replaced meanwhile: look again
        except FileNotFoundError:
            return
        silent_s = time.time() - heartbeat
        if _slurm_job() and holder.get("slurm_job") == _slurm_job():
            dead, why = True, f"SLURM job {_slurm_job()} was requeued"
        elif holder.get("host", host) == host:
            # flock works here, so nobody holding it means its holder is gone; else ask for the pid
            dead = locked is True or not _pid_alive(int(holder.get("pid", os.getpid())))
            why = "that process is gone"
        else:
            dead = silent_s > stale_s
            why = f"its heartbeat stopped {silent_s / 60:.0f} min ago"
        if not holder and silent_s <= stale_s:
            dead = False  # created an instant ago: its holder has not locked or written it yet
        if not dead:
            raise Held(describe(holder, heartbeat))
        log(f"[gmmvit] taking over {path.parent.name} from {describe(holder, heartbeat)}: {why}", flush=True)
        os.unlink(path)
    finally:
        os.close(fd)


def trainer(run_dir: Path, stale_s: float = STALE_S, now: Optional[float] = None) -> Optional[tuple[bool, str]]:
    """Who trains ``run_dir``, read without touching the lock: None when there is no lock file, else
    (alive, "pid P on HOST since T"). Alive means a relaunch would skip the run: on this host its pid
    lives and has beaten within ``stale_s``; on another host it has beaten within ``stale_s``."""
    path = Path(run_dir) / LOCK
    try:
        heartbeat = path.stat().st_mtime
        holder = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return False, "an unreadable lock"
    now = time.time() if now is None else now
    alive = now - heartbeat <= stale_s
    if alive and holder.get("host") == socket.gethostname() and holder.get("pid"):
        alive = _pid_alive(int(holder["pid"]))
    return alive, describe(holder, heartbeat)


__all__ = ["LOCK", "HEARTBEAT_S", "STALE_S", "Held", "RunLock", "acquire", "trainer"]
