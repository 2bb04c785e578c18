"""``python -m gmmvit.bench.gpu_check``: the check's phases in order, each capped, each one's failure
written down without losing the others (the package's docstring says what each does)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gmmvit.bench import mfu
from gmmvit.bench.gpu_check.accuracy import phase_a
from gmmvit.bench.gpu_check.output import LINES, RESULTS, elapsed, emit
from gmmvit.bench.gpu_check.throughput import best_utilisation, phase_b, phase_c, phase_d, phase_e
from gmmvit.bench.gpu_scale import GPU, REHEARSAL, on_cpu
from gmmvit.catalog import MODELS, REPO


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fmnist", required=True, help="folder with Fashion-MNIST's *-ubyte.gz")
    p.add_argument("--out", default="gpu_check.md")
    p.add_argument("--budget", type=float, help="seconds for the whole check (480; rehearsed: 1200)")
    p.add_argument("--mode", default="auto", help="compile setting timed for every model")
    p.add_argument("--other-mode", default="reduce-overhead",
                   help="the second compile setting, timed for ViT-GMM without step_graph")
    p.add_argument("--step-graph", default="true", help="step_graph for the timed runs (phases B, C)")
    p.add_argument("--parallel", type=int, default=os.cpu_count(),
                   help="phase A's processes at a time (23 at once overran the cap on a 16-core H200 machine)")
    p.add_argument("--warm", default="t2t", help="models compiled in phase A, for phase B (all; '' for none)")
    p.add_argument("--phases", default="a,b,c,d,e")
    p.add_argument("--logs", default="/tmp/gpu_check_logs", help="each process's log")
    p.add_argument("--models", default=",".join(MODELS), help="the models every phase covers")
    p.add_argument("--workdir", default=str(REPO), help="phase A's runs go to its multirun/")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the card's dense bf16 peak for MFU (default: gmmvit.bench.mfu's table by the card's name)")
    p.add_argument("--rehearse", action="store_true",
                   help="every phase on the CPU at a toy scale: proves the script, measures nothing")
    args = p.parse_args()
    args.models = args.models.split(",")
    args.scale = REHEARSAL if args.rehearse else GPU
    if args.rehearse:
        args.mode, args.other_mode = on_cpu("compile", args.mode), on_cpu("compile", args.other_mode)
        args.step_graph = on_cpu("step_graph", args.step_graph)
    args.budget = args.budget or (1200 if args.rehearse else 480)
    out = Path(args.out)
    logs = Path(args.logs)
    for folder in (logs, out.parent, Path(args.workdir)):
        folder.mkdir(parents=True, exist_ok=True)
    import torch

    if args.rehearse:
        emit("## gmmvit GPU check: REHEARSAL on the CPU (toy sizes, CUDA-only settings replaced: no figure "
             "below means anything)", "")
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (--rehearse runs it on the CPU)")
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    args.card, args.peak = card, args.peak_tflops or mfu.peak_tflops(card)
    emit("## gmmvit GPU check", "", f"- card: {card} (dense bf16 peak: "
         f"{f'{args.peak:g} TFLOPS' if args.peak else 'not known'}); torch {torch.__version__}; "
         f"{os.cpu_count()} CPU cores; command: `python -m gmmvit.bench.gpu_check {' '.join(sys.argv[1:])}`", "")
    caps = {"a": 0.40, "b": 0.36, "c": 0.17}
    phases = args.phases.split(",")
    for phase in phases + (["mfu"] if {"b", "e"} & set(phases) else []):  # the rates' MFU once all are in
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
            elif phase == "mfu":
                best_utilisation(args)
        except Exception as exc:  # noqa: BLE001 - a phase's failure must not lose the others
            import traceback

            emit(f"- phase {phase} failed: {type(exc).__name__}: {exc}", "```", traceback.format_exc()[-2000:], "```")
        out.write_text("\n".join(LINES) + "\n")
        (out.parent / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    emit(f"- total {elapsed():.0f}s")
    out.write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
