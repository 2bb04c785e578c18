"""Several runs packed on one device, measured over a common time window.

N worker processes start together; each builds its model and its device-resident data, takes
``warmup`` training steps (compilation, the CUDA graph's capture), then waits on a file barrier
until all N have warmed up, and only then trains ``steps`` timed steps. The packed rate is the
images all of them trained, over the window from the first timed start to the last end; the gain
is that rate over one process's rate measured the same way (N = 1).

Why: the figures this replaces summed each process's last-epoch img/s, in processes that finished
compiling at different times and so barely overlapped: each measured the card nearly alone.
Without MPS, kernels of different processes do not run concurrently on an NVIDIA GPU; they share
it by time slices, so packing can only fill the gaps one process leaves. ``mps_state`` says
whether an MPS daemon was running when it was measured; ``own_mps_daemon`` starts one for the
workers alone (a private pipe folder: no other process of the machine goes through it), where the
machine has ``nvidia-cuda-mps-control``, and quits it after. MPS is a user process: the card's
compute mode and every other setting stay as they were.

    python -m gmmvit.bench.packing --sizes 1,2,4 --steps 100 [--device cuda] [override ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from gmmvit.bench import flags
from gmmvit.bench.machine import compose
from gmmvit.config.reporting import guarded
from gmmvit.catalog import REPO
from gmmvit.errors import CommandLine, one_line_errors
from gmmvit.run.step import STEP_GRAPH

BARRIER_POLL_S = 0.001


class FileBarrier:
    """``parties`` processes meet in ``folder``: each leaves a file, then waits for all of them."""

    def __init__(self, folder: Path, parties: int, timeout_s: float = 600.0):
        self.folder, self.parties, self.timeout_s = Path(folder), parties, timeout_s

    def wait(self, rank: int) -> None:
        (self.folder / f"ready-{rank}").touch()
        deadline = time.time() + self.timeout_s
        while len(list(self.folder.glob("ready-*"))) < self.parties:
            if time.time() > deadline:
                raise TimeoutError(f"barrier in {self.folder}: {self.parties} parties expected, "
                                   f"{len(list(self.folder.glob('ready-*')))} arrived")
            time.sleep(BARRIER_POLL_S)


def aggregate(results: Sequence[dict]) -> dict:
    """Images of every process over the common window (first timed start to last end), and the
    span in which all of them were training at once (``overlap_s``)."""
    start, end = min(r["start"] for r in results), max(r["end"] for r in results)
    images = sum(r["images"] for r in results)
    overlap = max(0.0, min(r["end"] for r in results) - max(r["start"] for r in results))
    return {"processes": len(results), "images": images, "window_s": end - start, "img_s": images / (end - start),
            "overlap_s": overlap, "each_img_s": [r["images"] / (r["end"] - r["start"]) for r in results]}


def mps_state() -> str:
    """Whether an NVIDIA MPS control daemon is running here: its pipe, or its process."""
    pipe = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")) / "control"
    if pipe.exists():
        return f"running (control pipe {pipe})"
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().startswith("nvidia-cuda-mps"):
                return f"running (process {comm.parent.name})"
        except OSError:
            continue
    return "not running"


MPS_CONTROL = "nvidia-cuda-mps-control"


@contextmanager
def own_mps_daemon() -> Iterator[tuple[Optional[dict], str]]:
    """An MPS control daemon for the block: (the environment a worker needs to reach it, its state in
    words), or (None, why there is none). Quit when the block ends, however it ends."""
    control = shutil.which(MPS_CONTROL)
    if control is None:
        yield None, f"not started: no {MPS_CONTROL} on this machine"
        return
    with tempfile.TemporaryDirectory(prefix="gmmvit-mps-") as folder:
        env = {"CUDA_MPS_PIPE_DIRECTORY": str(Path(folder) / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(Path(folder) / "log")}
        for path in env.values():
            Path(path).mkdir()
        try:
            started = subprocess.run([control, "-d"], env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                     capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            yield None, f"not started: {MPS_CONTROL} -d: {type(exc).__name__}"
            return
        if started.returncode != 0:
            why = (started.stderr.strip().splitlines() or [f"exit {started.returncode}"])[-1][:160]
            yield None, f"not started: {MPS_CONTROL} -d: {why}"
            return
        try:
            yield env, f"started for these processes ({MPS_CONTROL} -d, pipe {env['CUDA_MPS_PIPE_DIRECTORY']})"
        finally:
            subprocess.run([control], input="quit\n", env={**os.environ, **env}, capture_output=True, text=True,
                           timeout=60)


def worker(spec: dict) -> dict:
    """One packed process: build, warm up, meet the others, then ``steps`` timed steps."""
    import torch

    from gmmvit.bench.epoch import synthetic_split
    from gmmvit.bench.machine import compose, sync
    from gmmvit.data.resident import GpuBatches
    from gmmvit.data.sampling import RepeatedPassSampler
    from gmmvit.run.compiling import Compiled
    from gmmvit.run.recipe import build_criterion, build_mixup, build_optimizer
    from gmmvit.run.step import build_step, step_graph_setting
    from gmmvit.run.train import build_model

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    cfg = compose(spec["overrides"])
    dev = torch.device(spec["device"])
    torch.manual_seed(spec["rank"])
    model = build_model(cfg).to(dev).train()
    compiled = Compiled(model, spec.get("compile", "false"), dev)
    how = step_graph_setting(spec.get("step_graph", "false"), dev, compiled.mode, cfg.recipe.drop_last)
    bf16 = dev.type == "cuda"
    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False)  # noqa: E731
    mixup = build_mixup(cfg.recipe, cfg.dataset.num_classes)
    step = build_step(how, model, compiled.model, build_optimizer(cfg.recipe, model),
                      build_criterion(cfg.recipe, mixup), autocast, cfg.recipe.grad_clip)
    ds = cfg.dataset
    split = synthetic_split(True, n_train=spec["images"], size=ds.img_size, channels=ds.channels,
                            classes=ds.num_classes)
    batches = GpuBatches.from_split(split, ds, cfg.recipe, dev, RepeatedPassSampler(len(split), 1, spec["rank"]))
    if len(batches) == 0:  # the loop below would wait forever for a batch
        raise ValueError(f"packing: {spec['images']} images make no full batch of {cfg.recipe.batch_size}")

    def run(n: int) -> int:
        seen = 0
        while seen < n * cfg.recipe.batch_size:
            for images, targets in batches:
                if mixup is not None:
                    images, targets = mixup(images, targets)
                step(images, targets)
                seen += images.shape[0]
                if seen >= n * cfg.recipe.batch_size:
                    break
        sync(dev)
        return seen

    run(spec["warmup"])
    arrived = time.time()
    FileBarrier(Path(spec["barrier"]), spec["parties"]).wait(spec["rank"])
    start = time.time()
    images = run(spec["steps"])
    return {"rank": spec["rank"], "arrived": arrived, "start": start, "end": time.time(), "images": images}


def measure(parties: int, overrides: Sequence[str] = (), steps: int = 50, warmup: int = 5, device: str = "cuda",
            compile: str = "false", step_graph: str = "false", images: int = 12_800, threads=None,
            timeout_s: float = 600.0, env: Optional[dict] = None) -> dict:
    """``parties`` workers at once on ``device``: their results and ``aggregate`` of them; ``env``:
    what the workers' environment adds (``own_mps_daemon``'s)."""
    with tempfile.TemporaryDirectory(prefix="gmmvit-packing-") as barrier:
        specs = [{"rank": r, "parties": parties, "barrier": barrier, "overrides": ["logger=none", *overrides],
                  "steps": steps, "warmup": warmup, "device": device, "compile": compile, "step_graph": step_graph,
                  "images": images, "threads": threads} for r in range(parties)]
        env = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        procs = [subprocess.Popen([sys.executable, "-m", "gmmvit.bench.packing", "--worker", json.dumps(s)], cwd=REPO,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in specs]
        results, errors = [], []
        deadline = time.time() + timeout_s
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.time(), 1))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
            if proc.returncode == 0 and lines:
                results.append(json.loads(lines[-1][7:]))
            else:
                errors.append(f"exit {proc.returncode}: {(err.strip().splitlines() or ['-'])[-1][:200]}")
    if errors:
        return {"processes": parties, "results": results, "error": "; ".join(errors)}
    return {**aggregate(results), "results": results}


@one_line_errors
def main(argv=None) -> int:
    p = CommandLine(prog="python -m gmmvit.bench.packing", description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=flags.sizes, default=[1, 2, 4], help="processes packed at once, each count in turn")
    p.add_argument("--steps", type=flags.count(1), default=50, help="timed steps of each process")
    p.add_argument("--warmup", type=flags.count(0), default=5, help="untimed steps first (compiling, the graph's capture)")
    p.add_argument("--device", type=flags.device, default=None, help="cuda (the default) | cuda:N | cpu | auto")
    p.add_argument("--compile", type=flags.compile_mode, default="false")
    p.add_argument("--step-graph", choices=STEP_GRAPH, default="false")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. model=vit mask=gmm")
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.device is None:  # checked here, not as argparse's default, which each worker would check too
        try:
            args.device = flags.device("cuda")
        except argparse.ArgumentTypeError as exc:
            p.error(f"argument --device: {exc}")
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    guarded(compose, ["logger=none", *args.overrides])  # a bad override: one line here, not one per process
    print(f"MPS: {mps_state()}")
    alone = None
    for n in args.sizes:
        r = measure(n, args.overrides, args.steps, args.warmup, args.device, args.compile, args.step_graph)
        if "error" in r:
            print(f"{n} processes: {r['error']}")
            continue
        alone = alone or (r["img_s"] if n == 1 else None)
        gain = f", x{r['img_s'] / alone:.2f} over one" if alone else ""
        print(f"{n} processes: {r['img_s']:,.0f} img/s together over a common {r['window_s']:.1f}s "
              f"(all training at once for {r['overlap_s']:.1f}s){gain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
