"""How the GPU check runs its work in child processes: their environment, and a plan of items one
after another in one process alone on the card (``run_serial``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gmmvit.bench.gpu_scale import Scale
from gmmvit.catalog import REPO


def child_env(scale: Scale, **extra: str) -> dict:
    """The environment of every process the check starts: the package on its path wherever it runs."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    threads = {"OMP_NUM_THREADS": str(scale.threads)} if scale.threads else {}
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **threads, **extra}


SERIAL = """
import json, sys, time
sys.path.insert(0, "src")
import gmmvit.run.profiling
from gmmvit.bench.epoch import gpu_data_rate, gpu_epoch
from gmmvit.bench.fused_rate import time_fused_steps
plan, gmmvit.run.profiling.WAIT_STEPS = json.loads(sys.argv[1]), int(sys.argv[2])
timed = {"e2e": gpu_epoch, "data": gpu_data_rate,
         "fused": lambda members, **kw: time_fused_steps(sizes=[members], **kw)[0]}
for item in plan:
    kind, kwargs = item["kind"], {k: v for k, v in item.items() if k != "kind"}
    t = time.time()
    try:
        r = timed[kind](**kwargs)
        r = {**item, **{k: v for k, v in r.items() if k not in item}, "wall": time.time() - t}
    except Exception as exc:
        r = {**item, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    print("RESULT " + json.dumps(r, default=str), flush=True)
"""


def run_serial(plan: list[dict], cap: float, log: Path, scale: Scale) -> list[dict]:
    """``plan``'s items one after another in one process: each a ``kind`` (``e2e``: ``gpu_epoch``,
    ``data``: ``gpu_data_rate``, ``fused``: ``time_fused_steps``) and its keyword arguments."""
    out = []
    try:
        proc = subprocess.run([sys.executable, "-c", SERIAL, json.dumps(plan), str(scale.profile_wait)], cwd=REPO,
                              capture_output=True, text=True, timeout=max(cap, 10), env=child_env(scale))
        text = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text += "\n[timed out]"
    log.write_text(text)
    for line in text.splitlines():
        if line.startswith("RESULT "):
            out.append(json.loads(line[7:]))
    return out
