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
from typing import Optional, Sequence

import torch

from gmmvit.bench import flags
from gmmvit.bench.epoch import gpu_epoch
from gmmvit.bench.fused_rate import time_fused_steps
from gmmvit.bench.loader import loader_throughput
from gmmvit.bench.machine import all_models, available, compose, machine
from gmmvit.bench.report import fmt, render
from gmmvit.bench.steps import authors_checkout_problem, time_train_steps
from gmmvit.catalog import DATASETS, MASKS
from gmmvit.config.schema import Precision
from gmmvit.errors import CommandLine
from gmmvit.nn.kernels import ATTENTION_MODES
from gmmvit.run.compiling import compile_setting
from gmmvit.run.fused import stacking_key


def _first_unstacked(model: str, masks: Sequence[str]) -> Optional[tuple[str, str]]:
    """The first pair of ``masks`` whose runs of ``model`` do not stack (``gmmvit.run.fused.stacking_key``)."""
    keys = {mask: stacking_key(compose([f"model={model}", f"mask={mask}", "dataset=cifar10"])) for mask in set(masks)}
    return next(((masks[0], m) for m in masks if keys[m] != keys[masks[0]]), None)


# what --tiny sets, where the command line does not set it; else the full-size defaults
TINY = {"batch": 8, "steps": 1, "loader_images": 32, "epoch_images": 512, "fused": [1, 2], "warmup": 1}
FULL = {"batch": 128, "steps": 10, "loader_images": 2048, "epoch_images": 50_000, "fused": [1, 2, 4], "warmup": None}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = CommandLine(prog="python -m gmmvit.bench", description=__doc__.split("\n\n")[0])
    models, masks = flags.names("model", all_models), flags.names("mask", lambda: MASKS)
    datasets = flags.names("dataset", lambda: available(DATASETS, "dataset"))
    p.add_argument("--models", type=models, default=None, help="comma list (default: all in conf/model/)")
    p.add_argument("--masks", type=masks, default=list(MASKS), help="comma list of none,elm,gmm")
    p.add_argument("--steps", type=flags.count(1), default=None, help="timed steps per model x mask (median; default 10)")
    p.add_argument("--warmup", type=flags.count(0), default=None, help="untimed steps first (default 2; 3 with compile)")
    p.add_argument("--batch", type=flags.count(1), default=None, help="images per step (default 128)")
    p.add_argument("--threads", type=flags.count(1), default=None, help="torch threads (default 2 on CPU)")
    p.add_argument("--device", type=flags.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=[c.value for c in Precision], help="auto (bf16 on GPU) | fp32 | bf16")
    p.add_argument("--compile", type=flags.compile_mode, default="auto",
                   help="auto (on for GPU, off for CPU) | true | false | a torch.compile mode, e.g. reduce-overhead")
    p.add_argument("--attention", default="auto", choices=ATTENTION_MODES, help="auto | explicit | flex (see gmmvit.nn.kernels)")
    p.add_argument("--datasets", type=datasets, default=None, help="loader datasets (default: all)")
    p.add_argument("--loader-images", type=flags.count(1), default=None, help="images per loader pass (default 2048)")
    p.add_argument("--no-steps", action="store_true", help="skip the train-step table")
    p.add_argument("--no-loader", action="store_true", help="skip the loader table")
    p.add_argument("--gpu-epoch", action=argparse.BooleanOptionalAction, default=None,
                   help="end-to-end epoch through train() (default: on when a GPU is present)")
    p.add_argument("--epoch-images", type=flags.count(1), default=None, help="images of the GPU epoch (default 50,000)")
    p.add_argument("--tiny", action="store_true",
                   help="CI-sized defaults: batch 8, 1 step after 1 warm-up, 32 loader images, fused 1,2 "
                        "(a flag given beside it keeps its value)")
    p.add_argument("--authors", default=None, metavar="PATH",
                   help="a checkout of the authors' repository (needs einops): time their model of the same "
                        "name and mask too, steps alternating with ours")
    p.add_argument("--fused", type=flags.sizes, default=None, help="fused group sizes for the fused row (default 1,2,4; '' skips it)")
    p.add_argument("--fused-model", choices=all_models(), default="vit", help="model of the fused row")
    p.add_argument("--fused-mask", type=masks, default=["gmm"],
                   help="its mask, or masks the members take in turn (none,gmm)")
    p.add_argument("--out", type=flags.out_file, default=None, help="also write the markdown report to this file")
    args = p.parse_args(argv)
    for key, value in (TINY if args.tiny else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unstacked = args.fused and _first_unstacked(args.fused_model, args.fused_mask)
    if unstacked:
        p.error(f"argument --fused-mask: {args.fused_model}'s {unstacked[0]} and {unstacked[1]} runs do not stack "
                "into one fused model (their models differ beyond the mask; a sweep fuses them in separate groups): "
                "give masks whose runs fuse, or time each mask on its own")
    args.fused_mask = ",".join(args.fused_mask)
    if args.authors:
        problem = authors_checkout_problem(args.authors)
        if problem:
            p.error(f"argument --authors: {problem}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    compile_ = compile_setting(args.compile, device) or "false"
    warmup = args.warmup if args.warmup is not None else (3 if compile_ != "false" else 2)
    threads = args.threads or (2 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    models = args.models or all_models()
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
    for size in args.fused:
        try:
            fused_rows += time_fused_steps(args.fused_model, args.fused_mask, sizes=[size], batch=args.batch,
                                           steps=args.steps, warmup=warmup, device=str(device), precision=precision,
                                           compile=compile_)
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
        args.out.write_text(report)
    return report


if __name__ == "__main__":
    main()
