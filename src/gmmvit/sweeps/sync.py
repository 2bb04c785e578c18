"""make sync: the W&B runs of sweeps logged offline, uploaded with W&B's own ``wandb sync``, each run's
newest log alone.

A run relaunched after a stop, or analysed by ``make eval`` / ``make locality``, has one offline log
per process, all of one W&B run id, and uploading a log replaces what the server holds of that run
(wandb#3841, #5865: a second log of one id is not appended to the first). So every log holds the
whole run (``gmmvit.run.tracking.WandbTracker.replay``: its epochs, mask snapshots, earlier analyses'
results and summary), and the newest is the one to upload: an older one uploaded after it would take
the run back to what that process knew.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gmmvit.errors import CommandLine, ConfigError, one_line_errors
from gmmvit.run import runlock
from gmmvit.run.tracking import OFFLINE_LOG, TRANSACTION_LOG, has_api_key, offline_logs, server, wandb_reachable
from gmmvit.sweeps.folders import collect_sweeps


@dataclass
class Upload:
    run_dir: Path
    log: Optional[Path]               # the newest offline log
    why_not: Optional[str] = None     # set where it is not uploaded now


def newest_log(run_dir: Path) -> Optional[Path]:
    """The run's newest offline log: by the start time W&B names it by, then by when it was last written."""
    logs = [p for p in offline_logs(run_dir) if p.is_dir() and any(p.glob(TRANSACTION_LOG))]
    return max(logs, key=lambda p: (p.name[len(OFFLINE_LOG):][:15], p.stat().st_mtime), default=None)


def is_synced(log: Path) -> bool:
    """W&B's own mark: ``wandb sync`` leaves ``run-<id>.wandb.synced`` beside a log it uploaded."""
    return any(p.with_suffix(".wandb.synced").exists() for p in log.glob(TRANSACTION_LOG))


def plan(run_dirs: list[Path]) -> list[Upload]:
    uploads = []
    for run_dir in run_dirs:
        log = newest_log(run_dir)
        held = runlock.trainer(run_dir)
        if log is None:
            why = "no offline W&B log (logged online, or with logger=none)"
        elif held is not None and held[0]:
            why = f"being trained ({held[1]}): its log is still being written; make sync after it ends"
        elif is_synced(log):
            why = "its newest log is uploaded already"
        else:
            why = None
        uploads.append(Upload(run_dir, log, why))
    return uploads


@one_line_errors
def main(argv=None) -> int:
    ap = CommandLine(prog="python -m gmmvit.sweeps.sync", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="*", default=["multirun"], help="sweep folders, folders of sweeps or runs")
    ap.add_argument("--dry", action="store_true", help="list each run's log to upload, upload nothing")
    args = ap.parse_args(argv)
    run_dirs = [run.path for runs in collect_sweeps([Path(p) for p in args.sweeps]).values() for run in runs]
    uploads = plan(run_dirs)
    for upload in uploads:
        print(f"{upload.run_dir}: {upload.why_not or f'upload {upload.log.name}'}", flush=True)
    todo = [upload.log for upload in uploads if upload.why_not is None]
    print(f"{len(todo)} of {len(uploads)} run(s) to upload", flush=True)
    if args.dry or not todo:
        return 0
    if not has_api_key():
        raise ConfigError("no W&B API key: run `wandb login` (or set WANDB_API_KEY), then make sync again; "
                          "nothing was uploaded")
    if not wandb_reachable():
        raise ConfigError(f"the W&B server ({server()}) cannot be reached from {socket.gethostname()}: make sync "
                          "from a machine with network (a cluster's login node); nothing was uploaded")
    return subprocess.run([sys.executable, "-m", "wandb", "sync", *map(str, todo)]).returncode


if __name__ == "__main__":
    sys.exit(main())
