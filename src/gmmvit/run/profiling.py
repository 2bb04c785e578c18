"""``profile_steps=N``: where a training step's time goes, from torch.profiler over N real steps.

The profiler starts after ``WAIT_STEPS`` steps of the run (compilation, CUDA-graph recording and the
first augmentation calls are over by then) and watches the next N steps of the real loop. It writes
``profile.md`` into the run folder: wall time per step, device busy time per step (the sum of kernel
times: busy well under wall means the host, not the GPU, sets the pace), kernel launches per step,
the top kernels and the top host operations; ``profile.json``, the same figures for a program to
compare (the GPU check sets a GMM run's beside its none run's); and ``trace.json`` for
chrome://tracing or Perfetto.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

WAIT_STEPS = 60
TOP = 15


def _device_time(evt) -> float:
    return getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0.0)


def figures(prof, steps: int, wall_s: float) -> dict:
    """Per step of one profiled window: wall and device-busy ms, kernel launches, and the top
    kernels and host operations (ms/step, calls/step)."""
    events = prof.key_averages()
    kernels = [e for e in events if _device_time(e) > 0 and e.key and not e.key.startswith("ProfilerStep")]
    # kernels and memcpy/memset run on the device; their host-side launch ops also carry device time
    # in key_averages, so keep only the device-side records (no host self time)
    device_side = [e for e in kernels if getattr(e, "self_cpu_time_total", 0) == 0]
    host = [e for e in events if getattr(e, "self_cpu_time_total", 0) > 0]
    return {"steps": steps, "wall_ms": 1000 * wall_s / steps,
            "busy_ms": sum(_device_time(e) for e in device_side) / 1000 / steps,
            "kernels": sum(e.count for e in device_side) / steps,
            "top_kernels": [{"name": e.key, "ms": _device_time(e) / 1000 / steps, "calls": e.count / steps}
                            for e in sorted(device_side, key=_device_time, reverse=True)[:TOP]],
            "top_host": [{"name": e.key, "ms": e.self_cpu_time_total / 1000 / steps, "calls": e.count / steps}
                         for e in sorted(host, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP]]}


def summarise(fig: dict) -> str:
    """The markdown report of one profiled window's ``figures``."""
    busy = fig["busy_ms"]
    lines = [f"- {fig['steps']} steps: wall {fig['wall_ms']:.2f} ms/step, device busy {busy:.2f} ms/step "
             f"({100 * busy / max(fig['wall_ms'], 1e-9):.0f}% of wall), {fig['kernels']:.0f} kernels/step",
             "", "| kernel | ms/step | calls/step | share of busy |", "|---|---|---|---|"]
    for k in fig["top_kernels"]:
        share = 100 * k["ms"] / max(busy, 1e-9)
        lines.append(f"| `{k['name'][:90]}` | {k['ms']:.3f} | {k['calls']:.1f} | {share:.1f}% |")
    lines += ["", "| host op | self ms/step | calls/step |", "|---|---|---|"]
    lines += [f"| `{h['name'][:90]}` | {h['ms']:.3f} | {h['calls']:.1f} |" for h in fig["top_host"]]
    return "\n".join(lines) + "\n"


class StepProfiler:
    """Profiles ``steps`` training steps once per run (no-op when ``steps`` is falsy)."""

    def __init__(self, steps: Optional[int], run_dir: Path, device: torch.device, wait: Optional[int] = None):
        self.steps, self.run_dir, self.device = int(steps or 0), Path(run_dir), device
        self.wait = WAIT_STEPS if wait is None else wait
        self.seen, self.prof, self.t0 = 0, None, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> None:
        """Call once after every training step."""
        if not self.steps:
            return
        self.seen += 1
        if self.seen == self.wait:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._sync()
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.start()
            self.t0 = time.perf_counter()
        elif self.prof is not None and self.seen == self.wait + self.steps:
            self._sync()
            wall = time.perf_counter() - self.t0
            self.prof.stop()
            fig = figures(self.prof, self.steps, wall)
            (self.run_dir / "profile.md").write_text(summarise(fig))
            (self.run_dir / "profile.json").write_text(json.dumps(fig, indent=1))
            self.prof.export_chrome_trace(str(self.run_dir / "trace.json"))
            self.prof, self.steps = None, 0
            print(f"[gmmvit] profile of {self.seen - self.wait} steps: {self.run_dir / 'profile.md'}", flush=True)
