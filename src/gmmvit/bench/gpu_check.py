"""The GPU check (NOT a pytest file): one prepared run on a bare CUDA machine, under 8 minutes.

    PYTHONUNBUFFERED=1 PYTHONPATH=src python -m gmmvit.bench.gpu_check --fmnist DIR [--out gpu_check.md] [--budget 440]

``--fmnist`` is a folder holding Debian's Fashion-MNIST files (``*-ubyte.gz``). On a bare machine
carry the wheels its image lacks (hydra-core, omegaconf, antlr4-python3-runtime, timm) and those
files; README "GPU figures" has the last results. In order:

A. (in parallel: the machine's cores are many) **accuracy pairs**: short real training runs
   through ``src/train.py`` on Fashion-MNIST (2 x 234 steps), each under named settings
   (``SETTINGS``: the defaults, ``step_graph=true``, every fast path off, ...), and one fused
   multirun (ViT-GMM, seeds 0, 1, 2 as one group) beside the same seeds unfused. With ``--warm``
   every model x mask is also compiled once on CIFAR-sized data, so phase B finds its kernels in
   the inductor cache (23 processes at once overran the cap on an H200: off by default).
B. (alone on the GPU, one after another) **end-to-end img/s** through ``train()`` for every model
   with none and gmm (CIFAR-sized synthetic uint8 data on the GPU, the paper's augmentation, batch
   128), the last of two epochs; ViT-GMM also under the other compile mode and with a profile.
C. **packing**: 1, 2 and 4 ViT-GMM processes at once on the card; they meet on a barrier after their
   warm-up, then each trains a fixed number of steps; img/s = all their images over the common
   window (``gmmvit.bench.packing``), and whether MPS was running.
D. **estimates**: one 300-pass CIFAR-10 run per model, and the 60-run table's GPU-hours.
E. **fused runs**: every model, none and gmm, G = 1, 4, 16 members trained as one model
   (``gmmvit.bench.fused_rate``): img/s of all members, per member, peak memory; then groups
   mixing none and gmm members (each its own mask), G = 4 and 16; the forward compiled; G = 2, 8.

Figures go to ``--out`` (markdown) and beside it ``gpu_check.json``; each phase is capped so one
failure or a slow phase loses nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gmmvit.bench import packing
from gmmvit.catalog import MODELS, PAPER_DATASETS, REPO, TEST_SIZE, TRAIN_SIZE
from gmmvit.data.datasets import fashion_mnist
from gmmvit.sweeps.cost import EVAL_COST, GPU_IMG_PER_S, recipe_length


T0 = time.time()
PACK_STEPS, PACK_WARMUP = 400, 20  # 400 x 128 images: several seconds a process at ViT-GMM's graphed rate
LINES: list[str] = []
RESULTS: dict = {}


def emit(*lines: str) -> None:
    for line in lines:
        LINES.append(line)
        print(line, flush=True)


def table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]


def elapsed() -> float:
    return time.time() - T0


# --- A. accuracy pairs + compile warm-up, in parallel ---------------------------------------------

SETTINGS = {  # name -> overrides; "defaults" is the config as shipped, "off" every fast path off
    "defaults": [],
    "graph": ["step_graph=true"],
    "off": ["compile=false", "attention=explicit", "data_on_gpu=false", "precision=fp32", "step_graph=false",
            "workers=3"],
    "defaults_eager": ["compile=false", "step_graph=false"],
    "fused": ["fused=3"],  # one multirun: FUSED_SEEDS trained as one fused group (the fused-runs issue)
}
# first the open questions of the last session: step_graph's accuracy, compiled Swin-GMM's 4-point gap
ACCURACY_RUNS = [("vit", "gmm", 0, "graph"), ("vit", "gmm", 0, "off"), ("vit", "gmm", 1, "graph"),
                 ("vit", "gmm", 1, "off"), ("swin", "gmm", 0, "defaults"), ("swin", "gmm", 0, "defaults_eager"),
                 ("swin", "gmm", 1, "defaults"), ("swin", "gmm", 1, "defaults_eager"),
                 ("swin", "gmm", 0, "graph"), ("swin", "none", 0, "defaults"), ("swin", "none", 0, "off")]
FUSED_SEEDS = (0, 1, 2)  # ViT-GMM fused against the same seeds' "defaults" runs
ACCURACY_RUNS += [("vit", "gmm", s, "defaults") for s in FUSED_SEEDS]
FUSED_RUNS = [("vit", "gmm", s, "fused") for s in FUSED_SEEDS]
SHORT_RECIPE = ["recipe.epochs=2", "recipe.passes_per_epoch=1", "recipe.warmup_epochs=0.2", "limit_train=30000"]

WARM = """
import sys
sys.path.insert(0, "src")
from gmmvit.bench.epoch import gpu_epoch
gpu_epoch(sys.argv[1], sys.argv[2], n_train=2560, n_test=2000, epochs=1, compile=sys.argv[3],
                step_graph=sys.argv[4])
"""


def accuracy_command(model, mask, seed, setting, data_root) -> list[str]:
    return [sys.executable, "src/train.py", f"model={model}", f"mask={mask}", f"seed={seed}",
            "dataset=fashion_mnist", f"paths.data={data_root}",  # phase_a unpacked the files there
            "logger=none", f"sweep=gpu_check_{setting}", *SHORT_RECIPE, *SETTINGS[setting]]


def fused_accuracy_command(data_root) -> list[str]:
    return [sys.executable, "src/train.py", "-m", "model=vit", "mask=gmm", f"seed={','.join(map(str, FUSED_SEEDS))}",
            "dataset=fashion_mnist", f"paths.data={data_root}", "logger=none", "sweep=gpu_check_fused",
            *SHORT_RECIPE, *SETTINGS["fused"]]


def log_tail(path: Path, lines: int = 6) -> str:
    text = [t for t in path.read_text(errors="replace").splitlines() if t.strip()] if path.exists() else []
    return " / ".join(t.strip()[:200] for t in text[-lines:])


def phase_a(args, logs: Path, cap: float) -> None:
    data_root = logs / "data"
    fashion_mnist(str(data_root / "fashion_mnist"), True, args.fmnist)  # unpack once, before the runs
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_COMPILE_THREADS": "4"}
    procs = {}
    for model, mask, seed, setting in ACCURACY_RUNS:
        name = f"acc_{setting}_{model}_{mask}_{seed}"
        procs[name] = subprocess.Popen(accuracy_command(model, mask, seed, setting, data_root), cwd=REPO, env=env,
                                       stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
    procs["acc_fused_vit_gmm"] = subprocess.Popen(fused_accuracy_command(data_root), cwd=REPO, env=env,
                                                  stdout=open(logs / "acc_fused_vit_gmm.log", "w"),
                                                  stderr=subprocess.STDOUT)
    for model, mask, mode in ([(m, k, args.mode) for m in MODELS for k in ("none", "gmm")] + \
                              [("vit", "gmm", args.other_mode)] if args.warm else []):
        name = f"warm_{model}_{mask}_{mode}"
        procs[name] = subprocess.Popen([sys.executable, "-c", WARM, model, mask, mode, args.step_graph], cwd=REPO,
                                       env=env,
                                       stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + cap
    status = {}
    for name, proc in procs.items():
        try:
            status[name] = proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            status[name] = "killed at the cap"
    emit(f"- phase A (parallel: {len(procs)} processes) took {elapsed():.0f}s; "
         f"not exit 0: {', '.join(f'{k} ({v})' for k, v in status.items() if v != 0) or 'none'}", "")
    for name, code in status.items():
        if code not in (0, "killed at the cap"):
            emit(f"  - {name}: {log_tail(logs / f'{name}.log')}")
    runs: dict = {}
    for setting in SETTINGS:
        for p in (REPO / "multirun" / f"gpu_check_{setting}").rglob("metrics.json"):
            m = json.loads(p.read_text())
            meta = m.get("meta", {})
            runs[(meta.get("model"), meta.get("mask"), meta.get("seed"), setting)] = m
    RESULTS["accuracy"] = {"|".join(map(str, k)): v for k, v in runs.items()}
    rows = []
    for key in dict.fromkeys((m, k, s) for m, k, s, _ in ACCURACY_RUNS):
        cells = []
        for setting in SETTINGS:
            m = runs.get((*key, setting))
            if (*key, setting) not in ACCURACY_RUNS + FUSED_RUNS:
                cells.append("")
                continue
            top1 = (m or {}).get("final", {}).get("final_top1")
            p = (m or {}).get("paths", {})
            cells.append(f"{top1:.2f} ({p.get('compiled')}, {p.get('attention')}, {p.get('data')}, "
                         f"{p.get('precision')}, step {p.get('step')}; {m.get('final', {}).get('wall_s', 0):.0f}s)"
                         if top1 is not None else (m or {}).get("status", "missing"))
        rows.append([*key, *cells])
    emit("### 1. The fast paths train right: Fashion-MNIST, 468 steps (2 x 234, batch 128), final test top-1", "",
         "Settings: " + "; ".join(f"`{k}` = {' '.join(v) or 'compile=auto attention=auto data_on_gpu=auto '}"
                                  f"{'' if v else 'precision=auto step_graph=auto'}" for k, v in SETTINGS.items()), "")
    emit(*table(["model", "mask", "seed", *SETTINGS], rows))


# --- B. end-to-end throughput, alone on the GPU ----------------------------------------------------

SERIAL = """
import json, sys, time
sys.path.insert(0, "src")
import torch
from gmmvit.bench.epoch import gpu_data_rate, gpu_epoch
from gmmvit.bench.steps import time_train_step
from gmmvit.bench.fused_rate import time_fused_steps
plan = json.loads(sys.argv[1])
for item in plan:
    kind = item.pop("kind")
    t = time.time()
    try:
        if kind == "e2e":
            r = gpu_epoch(n_train=12_800, n_test=2_000, epochs=2, **item)
        elif kind == "step":
            r = time_train_step(item["model"], item["mask"], batch=128, steps=30, warmup=5, device="cuda",
                                      precision="bf16", compile=item["compile"], attention="auto")
        elif kind == "data":
            r = gpu_data_rate(n_train=12_800)
        elif kind == "fused":
            r = time_fused_steps(item["model"], item["mask"], sizes=[item["members"]], batch=128, steps=20,
                                 warmup=3, device="cuda", precision="bf16", compile=item.get("compile", "false"))[0]
        r = {**item, "kind": kind, **{k: v for k, v in r.items() if k not in item}, "wall": time.time() - t}
    except Exception as exc:
        r = {**item, "kind": kind, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    print("RESULT " + json.dumps(r, default=str), flush=True)
"""


def run_serial(plan: list[dict], cap: float, log: Path) -> list[dict]:
    out = []
    try:
        proc = subprocess.run([sys.executable, "-c", SERIAL, json.dumps(plan)], cwd=REPO, capture_output=True,
                              text=True, timeout=max(cap, 10), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        text = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text += "\n[timed out]"
    log.write_text(text)
    for line in text.splitlines():
        if line.startswith("RESULT "):
            out.append(json.loads(line[7:]))
    return out


def phase_b(args, logs: Path, cap: float) -> None:
    graph = args.step_graph
    plan = [{"kind": "e2e", "model": "vit", "mask": "gmm", "compile": args.mode, "step_graph": graph,
             "profile_steps": 20}]
    plan += [{"kind": "e2e", "model": "vit", "mask": "gmm", "compile": args.other_mode, "step_graph": "false"}]
    plan += [{"kind": "e2e", "model": m, "mask": k, "compile": args.mode, "step_graph": graph}
             for m in ["vit", "t2t", "swin", "cait", "pit"] for k in ("none", "gmm") if (m, k) != ("vit", "gmm")]
    plan += [{"kind": "data"}]
    results = run_serial(plan, cap, logs / "serial.log")
    RESULTS["serial"] = results
    rows = []
    for r in results:
        if r["kind"] != "e2e":
            continue
        if "error" in r:
            rows.append([r["model"], r["mask"], r["compile"], "-", "-", "error " + r["error"]])
            continue
        p = r.get("paths", {})
        minutes = (300 * 50_000 / r["img_s"] + 100 * 10_000 / (3 * r["img_s"])) / 60
        rows.append([r["model"], r["mask"], r["compile"], f"{r['img_s']:,.0f}", f"{minutes:.1f}",
                     f"{p.get('compiled')} ({p.get('graphs')} graphs, {p.get('graph_breaks')} breaks), "
                     f"{p.get('attention')}, data {p.get('data')}, {p.get('precision')}, step {p.get('step')}"])
    emit(f"### 2. End-to-end training img/s through train() (phase B ended at {elapsed():.0f}s)", "",
         "CIFAR-sized synthetic uint8 data on the GPU, the paper's augmentation (flip, crop, AutoAugment, "
         "erasing, Mixup/CutMix), batch 128, bf16; img/s of the second epoch (12,800 images); "
         "300-pass CIFAR-10 minutes = 300 x 50,000 training + 100 x 10,000 test images (a third the cost).", "")
    emit(*table(["model", "mask", "compile", "img/s", "300-pass run, min", "ran on"], rows))
    for r in results:
        if r["kind"] == "step":
            emit(f"- bare compiled train step ViT-GMM ({r.get('compile')}), no data: "
                 + (f"{r['img_s']:,.0f} img/s" if "img_s" in r else r.get("error", "-")))
        if r["kind"] == "data":
            emit("- data pipeline alone (GPU uint8 -> augmented batches + Mixup/CutMix, no model): "
                 + (f"{r['img_s']:,.0f} img/s" if "img_s" in r else r.get("error", "-")))
    for r in results:
        if r.get("profile"):
            emit("", f"#### Profile: ViT-GMM, compile={r['compile']}, 20 steps of the real loop", "", r["profile"])


# --- C. packing --------------------------------------------------------------------------------------

def phase_c(args, cap: float) -> None:
    """1, 2 and 4 ViT-GMM processes at once, timed over a common window after a barrier
    (``gmmvit.bench.packing``): the gain is what they train together over what one trains alone."""
    mps = packing.mps_state()
    RESULTS["packing"] = {"mps": mps}
    deadline = time.time() + cap
    rows, alone = [], None
    for k in (1, 2, 4):
        if deadline - time.time() < 40:
            rows.append([k, "-", "-", "-", "skipped: time"])
            continue
        r = packing.measure(k, ["model=vit", "mask=gmm", "dataset=cifar10"], steps=PACK_STEPS, warmup=PACK_WARMUP,
                            device="cuda", compile=args.mode, step_graph=args.step_graph,
                            timeout_s=max(deadline - time.time(), 10))
        RESULTS["packing"][k] = r
        if "error" in r:
            rows.append([k, "-", "-", "-", r["error"]])
            continue
        alone = alone or (r["img_s"] if k == 1 else None)
        rows.append([k, f"{r['img_s']:,.0f}", f"x{r['img_s'] / alone:.2f}" if alone else "-",
                     f"{r['window_s']:.1f} (all at once {r['overlap_s']:.1f})",
                     "each " + ", ".join(f"{e:,.0f}" for e in r["each_img_s"])])
    emit(f"### 3. Several ViT-GMM processes at once on the card (phase C ended at {elapsed():.0f}s)", "",
         f"Each process warms up ({PACK_WARMUP} steps: compile, graph capture), waits on a barrier, then trains "
         f"{PACK_STEPS} steps of batch 128 (GPU-resident synthetic CIFAR data, the paper's augmentation); "
         f"img/s = all images / (first start to last end). MPS: {mps}.", "")
    emit(*table(["processes", "img/s together", "gain over one", "common window, s", "per process img/s"], rows))


# --- D. estimates ------------------------------------------------------------------------------------

def phase_d(args) -> None:
    e2e = {(r["model"], r["mask"]): r["img_s"] for r in RESULTS.get("serial", [])
           if r["kind"] == "e2e" and r.get("compile") == args.mode and "img_s" in r}
    rates = {m: (e2e.get((m, "none"), 0) + e2e.get((m, "gmm"), 0)) / 2 for m in MODELS
             if (m, "none") in e2e and (m, "gmm") in e2e}
    epochs, passes = recipe_length()
    hours = 0.0
    for m in MODELS:
        for ds in PAPER_DATASETS:
            images = TRAIN_SIZE[ds] * passes + EVAL_COST * TEST_SIZE[ds]
            hours += 3 * epochs * images / rates.get(m, GPU_IMG_PER_S[m]) / 3600
    packed = RESULTS.get("packing", {})
    one = (packed.get(1) or {}).get("img_s")
    gains = {k: packed[k]["img_s"] / one for k in (2, 4) if one and (packed.get(k) or {}).get("img_s")}
    RESULTS["rates"], RESULTS["packing_gain"], RESULTS["table_hours"] = rates, gains, hours
    emit("### 4. Estimates", "",
         f"- measured img/s per model (mean of none and gmm, compile={args.mode}): "
         + ", ".join(f"{m} {r:,.0f}" for m, r in rates.items()),
         f"- the 60-run table (5 models x 3 masks x 4 datasets, one seed), one run per GPU: **{hours:.1f} GPU-hours**"
         + (" (models without a measurement use gmmvit.sweeps.cost.GPU_IMG_PER_S)" if len(rates) < len(MODELS) else ""),
         *(f"- with {k} runs per GPU (ViT-GMM's packing gain x{g:.2f}, measured over a common window, applied to "
           f"all): **{hours / g:.1f} GPU-hours**"
           for k, g in gains.items()), "")


# --- E. fused runs ----------------------------------------------------------------------------------

FUSED_SIZES = (1, 4, 16)  # first, for every model; then MIXED_SIZES, the compiled rows, LATER_SIZES
MIXED_SIZES = (4, 16)
LATER_SIZES = (2, 8)


def phase_e(args, logs: Path, cap: float) -> None:
    """Every model, none and gmm, G members trained as one model (``gmmvit.run.fused``: vmap over
    stacked weights, explicit attention, eager), G = 1, 4, 16; groups mixing none and gmm; the
    forward compiled; then G = 2, 8. A size that does not fit shows its error (out of memory), and
    the cap ends the phase (the most telling rows come first)."""
    def sizes(gs, masks=("none", "gmm"), models=MODELS, **extra):
        return [{"kind": "fused", "model": m, "mask": k, "members": g, **extra} for m in models for k in masks
                for g in gs]

    # a sweep over masks fuses them (each member its own); ViT's none and gmm do not stack (pooling)
    plan = (sizes(FUSED_SIZES) + sizes(MIXED_SIZES, ("none,gmm",), [m for m in MODELS if m != "vit"])
            + sizes((4, 16), ("gmm",), ["vit"], compile="true")
            + sizes((4, 16), ("none,gmm",), ["swin"], compile="true") + sizes(LATER_SIZES))
    results = run_serial(plan, cap, logs / "fused.log")
    RESULTS["fused"] = results
    rows = [[r["model"], r["mask"], r["members"], r.get("compiled", r.get("compile", "eager")),
             *(["error " + r["error"], "-", "-"] if "error" in r else
             [f"{r['img_s']:,.0f}", f"{r['member_img_s']:,.0f}", f"{r['peak_mib']:,.0f}"])] for r in results]
    emit(f"### 5. Fused runs: G members of one model as one (phase E ended at {elapsed():.0f}s)", "",
         "Random CIFAR-sized batches of 128 per member, bf16, 20 steps after 3; img/s of all members "
         "together, per member, and peak memory. Compare G = 1 with the unfused rows above (compiled and "
         "graphed there; eager here unless the row says compiled).", "")
    emit(*table(["model", "mask", "members", "forward", "img/s, all members", "img/s per member", "peak MiB"], rows))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fmnist", required=True, help="folder with Fashion-MNIST's *-ubyte.gz")
    p.add_argument("--out", default="gpu_check.md")
    p.add_argument("--budget", type=float, default=480, help="seconds for the whole check")
    p.add_argument("--mode", default="auto", help="compile setting timed for every model")
    p.add_argument("--other-mode", default="reduce-overhead",
                   help="the second compile setting, timed for ViT-GMM without step_graph")
    p.add_argument("--step-graph", default="true", help="step_graph for the timed runs (phases B, C)")
    p.add_argument("--warm", action="store_true", help="compile every model x mask in phase A")
    p.add_argument("--phases", default="a,b,c,d,e")
    p.add_argument("--logs", default="/tmp/gpu_check_logs", help="each process's log")
    args = p.parse_args()
    out = Path(args.out)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    emit("## gmmvit GPU check", "", f"- card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
         f"{os.cpu_count()} CPU cores; command: `python -m gmmvit.bench.gpu_check {' '.join(sys.argv[1:])}`", "")
    caps = {"a": 0.40, "b": 0.36, "c": 0.17}
    for phase in args.phases.split(","):
        try:
            if phase == "a":
                phase_a(args, logs, caps["a"] * args.budget)
            elif phase == "b":
                phase_b(args, logs, caps["b"] * args.budget)
            elif phase == "c":
                phase_c(args, min(caps["c"] * args.budget, args.budget - elapsed() - 10))
            elif phase == "d":
                phase_d(args)
            elif phase == "e":
                phase_e(args, logs, args.budget - elapsed() - 10)
        except Exception as exc:  # noqa: BLE001 - a phase's failure must not lose the others
            import traceback

            emit(f"- phase {phase} failed: {type(exc).__name__}: {exc}", "```", traceback.format_exc()[-2000:], "```")
        out.write_text("\n".join(LINES) + "\n")
        (out.parent / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    emit(f"- total {elapsed():.0f}s")
    out.write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
