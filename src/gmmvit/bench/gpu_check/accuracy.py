"""Phase A of the GPU check: short real trainings under named settings, two seeds each, whose
final top-1 says whether the fast paths train right; the fused accuracy pair; one step compiled
against eager; the compile warm-up of the models phase B would otherwise compile inside its cap."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from gmmvit.bench import compiled_grads
from gmmvit.bench.gpu_check.output import RESULTS, elapsed, emit, log_tail, table
from gmmvit.bench.gpu_check.processes import child_env
from gmmvit.bench.gpu_scale import Scale, on_cpu
from gmmvit.catalog import REPO
from gmmvit.data.datasets import fashion_mnist


SETTINGS = {  # name -> overrides; "defaults" is the config as shipped, "off" every fast path off
    "defaults": [],
    "graph": ["step_graph=true"],
    "off": ["compile=false", "attention=explicit", "data_on_gpu=false", "precision=fp32", "step_graph=false",
            "workers=3"],
    "defaults_eager": ["compile=false", "step_graph=false"],
    # if compiled Swin-GMM is low again, which setting does it: precision, the data on the device, the compile mode
    "compiled_fp32": ["compile=true", "precision=fp32"],
    "compiled_loader": ["compile=true", "data_on_gpu=false", "workers=3"],
    "compiled_graphs": ["compile=reduce-overhead", "step_graph=false"],
    "fused": ["fused=3"],  # one multirun: FUSED_SEEDS trained as one fused group (the fused-runs issue)
}
# issue 21 (1): the defaults, step_graph=true and every fast path off, two seeds each, for ViT-GMM,
# Swin-GMM and Swin-none; compiled vs eager Swin-GMM; then the settings that would name the cause of a
# low compiled Swin-GMM. Started in this order, so a crowded card serves the pairs first.
PAIRED = [("vit", "gmm"), ("swin", "gmm"), ("swin", "none")]
ACCURACY_RUNS = [(m, k, s, setting) for setting in ("defaults", "graph", "off") for m, k in PAIRED for s in (0, 1)]
ACCURACY_RUNS += [("swin", "gmm", s, "defaults_eager") for s in (0, 1)]
FUSED_SEEDS = (0, 1, 2)  # ViT-GMM fused against the same seeds' "defaults" runs
ACCURACY_RUNS += [("vit", "gmm", 2, "defaults")]
ACCURACY_RUNS += [("swin", "gmm", 0, "compiled_fp32"), ("swin", "gmm", 0, "compiled_loader"),
                  ("swin", "gmm", 0, "compiled_graphs")]
FUSED_RUNS = [("vit", "gmm", s, "fused") for s in FUSED_SEEDS]
# one training step compiled against eager, same weights and batch (gmmvit.bench.compiled_grads): whether a
# low compiled pair is the compiler's function or seed noise; Swin's windows take the explicit path, ViT flex
GRADS = [("swin", "gmm"), ("vit", "gmm")]

WARM = """
import json, sys
from gmmvit.bench.epoch import gpu_epoch
gpu_epoch(**json.loads(sys.argv[1]))
"""


def settings(setting: str, scale: Scale) -> list[str]:
    overrides = [*scale.recipe, *SETTINGS[setting]]
    if scale.device == "cuda":
        return overrides
    return [f"{k}={on_cpu(k, v)}" for k, _, v in (o.partition("=") for o in overrides)]


def accuracy_command(model, mask, seed, setting, data_root, scale: Scale) -> list[str]:
    return [sys.executable, str(REPO / "src" / "train.py"), f"model={model}", f"mask={mask}", f"seed={seed}",
            "dataset=fashion_mnist", f"paths.data={data_root}",  # phase_a unpacked the files there
            "logger=none", f"sweep=gpu_check_{setting}", *settings(setting, scale)]


def grads_command(model, mask, logs: Path, scale: Scale) -> list[str]:
    return [sys.executable, "-m", "gmmvit.bench.compiled_grads", "--model", model, "--mask", mask,
            "--device", scale.device, "--batch", str(scale.grads_batch), "--backend", scale.grads_backend,
            "--out", str(logs / f"grads_{model}_{mask}.json")]


def fused_accuracy_command(data_root, scale: Scale) -> list[str]:
    return [sys.executable, str(REPO / "src" / "train.py"), "-m", "model=vit", "mask=gmm",
            f"seed={','.join(map(str, FUSED_SEEDS))}", "dataset=fashion_mnist", f"paths.data={data_root}",
            "logger=none", "sweep=gpu_check_fused", *settings("fused", scale)]


def phase_a(args, logs: Path, cap: float) -> None:
    data_root = logs / "data"
    fashion_mnist(str(data_root / "fashion_mnist"), True, args.fmnist)  # unpack once, before the runs
    env = child_env(args.scale, TORCHINDUCTOR_COMPILE_THREADS="4")
    runs = [r for r in ACCURACY_RUNS if r[0] in args.models]
    warm = [m for m in args.models if args.warm == "all" or m in args.warm.split(",")]
    queue = []  # (name, argv), most needed first: a crowded machine serves these first
    for model, mask, mode in ([(m, k, args.mode) for m in warm for k in ("none", "gmm")]
                              + ([("vit", "gmm", args.other_mode)] if "vit" in warm else [])):
        run = {"model": model, "mask": mask, "compile": mode, "step_graph": args.step_graph, "epochs": 1,
               "device": args.scale.device, "n_train": 20 * args.scale.batch, "n_test": args.scale.e2e_test,
               "batch": args.scale.batch}  # phase B's shapes: its graphs are these
        queue.append((f"warm_{model}_{mask}_{mode}", [sys.executable, "-c", WARM, json.dumps(run)]))
    for model, mask in (g for g in GRADS if g[0] in args.models):
        queue.append((f"grads_{model}_{mask}", grads_command(model, mask, logs, args.scale)))
    for model, mask, seed, setting in runs:
        if (model, mask, seed, setting) == ("vit", "gmm", FUSED_SEEDS[-1], "defaults"):  # the fused pair's
            queue.append(("acc_fused_vit_gmm", fused_accuracy_command(data_root, args.scale)))
        queue.append((f"acc_{setting}_{model}_{mask}_{seed}",
                      accuracy_command(model, mask, seed, setting, data_root, args.scale)))
    deadline = time.time() + cap
    status, running = {}, {}
    while (queue or running) and time.time() < deadline:
        while queue and len(running) < args.parallel:
            name, argv = queue.pop(0)
            running[name] = subprocess.Popen(argv, cwd=args.workdir, env=env, stdout=open(logs / f"{name}.log", "w"),
                                             stderr=subprocess.STDOUT)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                status[name] = running.pop(name).returncode
        time.sleep(0.5)
    for name, proc in running.items():
        proc.kill()
        status[name] = "killed at the cap"
    status.update({name: "not started: the cap" for name, _ in queue})
    emit(f"- phase A ({len(status)} processes, {args.parallel} at a time) took {elapsed():.0f}s; "
         f"not exit 0: {', '.join(f'{k} ({v})' for k, v in status.items() if v != 0) or 'none'}", "")
    for name, code in status.items():
        if code not in (0, "killed at the cap", "not started: the cap"):
            emit(f"  - {name}: {log_tail(logs / f'{name}.log')}")
    found: dict = {}
    for setting in SETTINGS:
        for p in (Path(args.workdir) / "multirun" / f"gpu_check_{setting}").rglob("metrics.json"):
            m = json.loads(p.read_text())
            meta = m.get("meta", {})
            found[(meta.get("model"), meta.get("mask"), meta.get("seed"), setting)] = m
    RESULTS["accuracy"] = {"|".join(map(str, k)): v for k, v in found.items()}
    rows = []
    for key in dict.fromkeys((m, k, s) for m, k, s, _ in runs):
        cells = []
        for setting in SETTINGS:
            m = found.get((*key, setting))
            if (*key, setting) not in runs + FUSED_RUNS:
                cells.append("")
                continue
            top1 = (m or {}).get("final", {}).get("final_top1")
            p = (m or {}).get("paths", {})
            cells.append(f"{top1:.2f} ({p.get('compiled')}, {p.get('attention')}, {p.get('data')}, "
                         f"{p.get('precision')}, step {p.get('step')}; {m.get('final', {}).get('wall_s', 0):.0f}s)"
                         if top1 is not None else (m or {}).get("status", "missing"))
        rows.append([*key, *cells])
    emit(f"### 1. The fast paths train right: Fashion-MNIST ({' '.join(args.scale.recipe)}), final test top-1", "",
         "Settings: " + "; ".join(f"`{k}` = {' '.join(v) or 'compile=auto attention=auto data_on_gpu=auto '}"
                                  f"{'' if v else 'precision=auto step_graph=auto'}" for k, v in SETTINGS.items()), "")
    emit(*table(["model", "mask", "seed", *SETTINGS], rows))
    grads = {f"{m}|{k}": json.loads(p.read_text()) for m, k in GRADS if (p := logs / f"grads_{m}_{k}.json").exists()}
    RESULTS["compiled_grads"] = grads
    emit("### 1b. One training step compiled against eager (same weights, same batch; gradient error "
         "relative to eager fp32)", "")
    for report in grads.values():
        emit(*compiled_grads.markdown(report))
