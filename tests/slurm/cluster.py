"""A real single-node SLURM cluster on this machine, from Debian's packages (slurm-wlm, munge).

``LocalSlurm(state_dir).start()`` writes /etc/slurm/slurm.conf (backing up any existing one), starts
munged (unless one is running), slurmctld and slurmd with their state, logs and pid files under
``state_dir``, and waits for the node to be idle. ``stop()`` ends exactly the daemons it started, by
their pid files, and restores /etc/slurm/slurm.conf and the munge key as they were.
Run as a script for a manual session: ``python tests/slurm/cluster.py up|down STATE_DIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
PACKAGES = ["slurm-wlm", "munge"]

CONF_TEMPLATE = """\
ClusterName=local
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/state
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# a requeued job step gets SIGKILL 1 s after SIGTERM (default 30 s: a tiny test job would finish first)
KillWait=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=300
NodeName={host} CPUs={ncpu} RealMemory=20000 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmUnavailable(RuntimeError):
    pass


def _daemon_running(name: str) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == name:
                    return True
            except OSError:
                continue
    return False


def ensure_installed(timeout: int = 300) -> None:
    """apt-get install the packages when the daemons are missing (root only)."""
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("SLURM is not installed and installing it needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-qq", *PACKAGES], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {exc}") from None
        if cmd[1] == "install" and done.returncode == 0:
            break
    if not (shutil.which("slurmctld") and shutil.which("slurmd")):
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-300:]}")


class LocalSlurm:
    def __init__(self, state_dir: Path):
        self.state = Path(state_dir)
        self.host = socket.gethostname().split(".")[0]
        self.started: list[tuple[str, Path]] = []  # (daemon, pid file) in start order
        self.backup: dict[Path, bytes | None] = {}

    # --- files -----------------------------------------------------------------------------------
    def _install_file(self, path: Path, data: bytes, mode: int, owner: str | None = None) -> None:
        if path not in self.backup:
            self.backup[path] = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
        if owner:
            shutil.chown(path, owner, owner)

    def _restore_files(self) -> None:
        for path, data in self.backup.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        self.backup.clear()

    # --- daemons ---------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "LocalSlurm":
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting SLURM daemons needs root")
        ensure_installed()
        if _daemon_running("slurmctld") or _daemon_running("slurmd"):
            raise SlurmUnavailable("a SLURM daemon is already running on this machine; not touching it")
        for sub in ("state", "spool"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            conf = CONF_TEMPLATE.format(host=self.host, ncpu=os.cpu_count() or 1, state=self.state)
            self._install_file(SLURM_CONF, conf.encode(), 0o644)
            self._spawn("slurmctld", ["/usr/sbin/slurmctld"], self.state / "slurmctld.pid")
            self._spawn("slurmd", ["/usr/sbin/slurmd"], self.state / "slurmd.pid")
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        if MUNGE_SOCKET.exists() and _daemon_running("munged"):
            return  # a running munged serves us; leave it alone
        if not MUNGE_KEY.exists():
            self._install_file(MUNGE_KEY, os.urandom(1024), 0o400, owner="munge")
        for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        pid_file = Path("/run/munge/munged.pid")  # munged writes it as the munge user
        pid_file.unlink(missing_ok=True)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"],
                       check=True, capture_output=True, timeout=30)
        deadline = time.time() + 10
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        self.started.append(("munged", pid_file))

    def _spawn(self, name: str, cmd: list[str], pid_file: Path) -> None:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise SlurmUnavailable(f"{name} did not start: {done.stderr.strip()[-300:]}")
        self.started.append((name, pid_file))
        deadline = time.time() + 15
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
            last = (out.stdout + out.stderr).strip()
            if out.returncode == 0 and last in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"the SLURM node did not come up (sinfo: {last!r}); see {self.state}/*.log")

    def stop(self) -> None:
        for name, pid_file in reversed(self.started):
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.time() + 20
            while time.time() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        self.started.clear()
        self._end_job_steps()
        self._restore_files()

    def _end_job_steps(self) -> None:
        """Kill what outlives slurmd: a job's slurmstepd and its batch script (run from this
        cluster's spool) with everything under them. Left running, they hold the node's ports and
        the next cluster started on this machine does not come up."""
        parent = {}
        cmdline = {}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    text = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    cmdline[int(proc.name)] = text.decode(errors="replace")
                except (OSError, ValueError, IndexError):
                    continue
        scripts = {pid for pid, text in cmdline.items() if str(self.state / "spool") in text}
        steps = {parent.get(pid) for pid in scripts if cmdline.get(parent.get(pid), "").startswith("slurmstepd")}
        doomed = scripts | (steps - {None})
        grew = True
        while grew:
            below = {pid for pid, ppid in parent.items() if ppid in doomed} - doomed
            grew = bool(below)
            doomed |= below
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def save(self) -> None:
        (self.state / "cluster.json").write_text(json.dumps(
            {"started": [(n, str(p)) for n, p in self.started],
             "backup": {str(k): (v.hex() if v is not None else None) for k, v in self.backup.items()}}))

    @classmethod
    def load(cls, state_dir: Path) -> "LocalSlurm":
        self = cls(state_dir)
        data = json.loads((self.state / "cluster.json").read_text())
        self.started = [(n, Path(p)) for n, p in data["started"]]
        self.backup = {Path(k): (bytes.fromhex(v) if v is not None else None) for k, v in data["backup"].items()}
        return self


if __name__ == "__main__":
    action, state = sys.argv[1], Path(sys.argv[2])
    if action == "up":
        cluster = LocalSlurm(state).start()
        cluster.save()
        print(f"SLURM up on {cluster.host}; state in {state}")
    else:
        LocalSlurm.load(state).stop()
        print("SLURM down")
