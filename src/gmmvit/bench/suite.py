"""`make bench`: training speed on this machine, beside the authors' measured figures (gmmvit/paper).

One run measures and prints one markdown report (command and machine included):

* train-step img/s for every model x mask (models: those in ``conf/model/``), built through the
  project's own config (Hydra compose + ``gmmvit.run.train.build_model``): batch 128 of the dataset's
  input size, the recipe's AdamW and loss, median of ``--steps`` steps after warm-up, and the
  mask's overhead over the same model without it (a model's masks take turns step by step, so
  both see the same machine load); with ``--authors PATH`` the authors' models join the rotation;
* loader throughput per core (one process, one torch thread) of each dataset's training
  augmentation on synthetic images of the dataset's size: the per-image PIL pipeline
  (``gmmvit.data.transforms``, what the DataLoader runs) and the batched tensor pipeline
  (``gmmvit.data.batched``, what ``data_on_gpu`` runs on the GPU) on the CPU;
* fused runs (``--fused 1,2,4``): G members of one model x mask trained as one model
  (``gmmvit.run.fused``), aggregate and per-member img/s and peak memory for each G;
* on a GPU, one end-to-end training epoch (``train()`` itself on GPU-resident synthetic data).

    python -m gmmvit.bench                      # everything, CPU defaults: 2 threads, 10 steps
    python -m gmmvit.bench --models vit --masks none,gmm --steps 5 --out bench.md
    python -m gmmvit.bench --tiny               # CI-sized: batch 8, 1 step, 32 images
    python -m gmmvit.bench --authors /tmp/Gaussian-Mixture-Mask-Attention   # theirs vs ours, same machine
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from gmmvit.bench.epoch import gpu_epoch
from gmmvit.bench.fused_rate import time_fused_steps
from gmmvit.bench.loader import loader_throughput
from gmmvit.bench.machine import all_models, available, machine
from gmmvit.bench.report import fmt, render
from gmmvit.bench.steps import check_authors_checkout, time_train_steps
from gmmvit.catalog import CONF, DATASETS, MASKS
from gmmvit.errors import CommandLine
from gmmvit.run.compiling import compile_setting


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = CommandLine(prog="python -m gmmvit.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=_csv, default=None, help="comma list (default: all in conf/model/)")
    p.add_argument("--masks", type=_csv, default=list(MASKS), help="comma list of none,elm,gmm")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model x mask (median)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; 3 with compile)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 2 on CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--precision", default="auto", help="auto (bf16 on GPU) | fp32 | bf16")
    p.add_argument("--compile", default="auto",
                   help="auto (on for GPU, off for CPU) | true | false | a torch.compile mode, e.g. reduce-overhead")
    p.add_argument("--attention", default="auto", help="auto | explicit | flex (see gmmvit.nn.kernels)")
    p.add_argument("--datasets", type=_csv, default=None, help="loader datasets (default: all)")
    p.add_argument("--loader-images", type=int, default=2048)
    p.add_argument("--no-steps", action="store_true", help="skip the train-step table")
    p.add_argument("--no-loader", action="store_true", help="skip the loader table")
    p.add_argument("--gpu-epoch", action=argparse.BooleanOptionalAction, default=None,
                   help="end-to-end epoch through train() (default: on when a GPU is present)")
    p.add_argument("--epoch-images", type=int, default=50_000)
    p.add_argument("--tiny", action="store_true", help="CI-sized: batch 8, 1 step, 32 loader images")
    p.add_argument("--authors", default=None, metavar="PATH",
                   help="a checkout of the authors' repository (needs einops): time their model of the same "
                        "name and mask too, steps alternating with ours")
    p.add_argument("--fused", default="1,2,4", help="fused group sizes for the fused row ('' skips it)")
    p.add_argument("--fused-model", default="vit", help="model x mask of the fused row")
    p.add_argument("--fused-mask", default="gmm", help="its mask, or masks the members take in turn (none,gmm)")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.steps, args.loader_images, args.epoch_images = 8, 1, 32, 512
        args.fused = "1,2" if args.fused == "1,2,4" else args.fused
        args.warmup = 1 if args.warmup is None else args.warmup
    return args


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    try:
        compile_ = compile_setting(args.compile, device) or "false"
    except ValueError as exc:
        raise SystemExit(f"gmmvit.bench: {exc}")
    warmup = args.warmup if args.warmup is not None else (3 if compile_ != "false" else 2)
    threads = args.threads or (2 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    models = args.models or all_models()
    missing = [m for m in models if not (CONF / "model" / f"{m}.yaml").exists()]
    if missing:
        raise SystemExit(f"gmmvit.bench: no conf/model/{missing[0]}.yaml (models here: {', '.join(all_models())})")
    if args.authors:
        check_authors_checkout(args.authors)
    precision = args.precision
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    command = "python -m gmmvit.bench " + " ".join(shlex.quote(a) for a in argv)
    rotation = " and the authors' models" if args.authors else ""
    settings = (f"device {device.type}, batch {args.batch} (dataset cifar10, 3x32x32), recipe AdamW + "
                f"label-smoothing CE, median of {args.steps} step(s) after {warmup} warm-up (a model's masks"
                f"{rotation} taking turns step by step), "
                f"precision {'bf16 autocast' if bf16 else 'fp32'}, compile {compile_}, "
                f"attention {args.attention}")

    steps: list[dict] = []
    if not args.no_steps:
        for model in models:
            try:
                rs = time_train_steps(model, args.masks, batch=args.batch, steps=args.steps, warmup=warmup,
                                      device=str(device), precision=precision, compile=compile_,
                                      attention=args.attention, authors=args.authors)
            except Exception as exc:  # one model failing must not lose the rest of the table
                rs = [{"model": model, "mask": mask, "error": f"{type(exc).__name__}: {exc}"} for mask in args.masks]
            steps += rs
            for r in rs:
                print(f"[bench] step {model}/{r['mask']}: "
                      f"{fmt(r.get('img_s'), 1) if 'img_s' in r else r['error']}", file=sys.stderr, flush=True)

    loaders: list[dict] = []
    if not args.no_loader:
        for dataset in args.datasets or available(DATASETS, "dataset"):
            try:
                loaders.append(loader_throughput(dataset, n=args.loader_images))
            except Exception as exc:
                loaders.append({"dataset": dataset, "error": f"{type(exc).__name__}: {exc}"})

    epochs: list[dict] = []
    run_epoch = args.gpu_epoch if args.gpu_epoch is not None else device.type == "cuda"
    if run_epoch:
        for mask in [m for m in ("none", "gmm") if m in args.masks] or ["gmm"]:
            try:
                epochs.append(gpu_epoch("vit", mask, n_train=args.epoch_images, compile=compile_,
                                        attention=args.attention, device=str(device), batch=args.batch,
                                        data_on_gpu="true" if device.type == "cuda" else "false"))
            except Exception as exc:
                epochs.append({"model": "vit", "mask": mask, "error": f"{type(exc).__name__}: {exc}"})

    fused_rows: list[dict] = []
    for size in [int(s) for s in _csv(args.fused)]:
        try:
            fused_rows += time_fused_steps(args.fused_model, args.fused_mask, sizes=[size], batch=args.batch,
                                           steps=args.steps, warmup=warmup, device=str(device), precision=precision)
        except Exception as exc:  # a size that does not fit must not lose the rest of the report
            fused_rows.append({"model": args.fused_model, "mask": args.fused_mask, "members": size,
                               "error": f"{type(exc).__name__}: {exc}"})

    notes = ["authors' figures: gmmvit/paper (their code, same machine as their report: 2 CPU threads, "
             "batch 128, median of 10 steps); compare only like with like."]
    if device.type == "cpu" and os.cpu_count() and os.cpu_count() <= 4:
        notes.append("timings on a small shared CPU are noisy: re-measure on a quiet machine before quoting.")
    report = render(command, machine(device, threads), settings, steps, loaders, epochs, notes, fused_rows)
    print(report, flush=True)
    if args.out:
        Path(args.out).write_text(report)
    return report


if __name__ == "__main__":
    main()
