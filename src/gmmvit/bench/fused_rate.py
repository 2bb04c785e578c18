"""Fused training throughput: G members of one model x mask trained as one model
(``gmmvit.run.fused``), for growing G, in one process (``mask`` may list masks, ``none,gmm``: the
members take them in turn, each its own, as a sweep over masks fuses them): aggregate img/s (every
member's images over the same timed steps), per-member img/s, and on CUDA the peak memory."""

from __future__ import annotations

import time
from typing import Sequence

import torch
from timm.loss import SoftTargetCrossEntropy

from gmmvit.bench.machine import compose, sync
from gmmvit.run import fused
from gmmvit.run.compiling import Compiled
from gmmvit.run.recipe import build_optimizer

FUSED_HEADER = ["model", "mask", "members", "img/s, all members", "img/s per member", "step ms", "peak MiB"]


def time_fused_steps(model: str, mask: str, sizes: Sequence[int] = (1, 2, 4), batch: int = 128, steps: int = 5,
                     warmup: int = 1, device: str = "cpu", precision: str = "fp32",
                     overrides: Sequence[str] = (), compile: str = "false") -> list[dict]:
    """One row per group size: ``steps`` fused training steps (forward, each member's loss,
    backward, per-member AdamW) after ``warmup`` (compiling, with ``compile`` set, happens there),
    on random images, members at seeds 0..G-1."""
    dev = torch.device(device)
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    rows = []
    for size in sizes:
        masks = mask.split(",")
        cfgs = [compose([f"model={model}", f"mask={masks[s % len(masks)]}", "dataset=cifar10", f"seed={s}",
                         *overrides]) for s in range(size)]
        net = fused.FusedModel([fused.build_member(c) for c in cfgs]).to(dev).train()
        ds = cfgs[0].dataset
        compiled = Compiled(lambda images, net=net: net(images), compile, dev)
        step = fused.FusedStep(net, build_optimizer(cfgs[0].recipe, net), SoftTargetCrossEntropy(),
                               lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16),
                               forward=compiled.model if compiled.mode else None)
        images = torch.randn(size, batch, ds.channels, ds.img_size, ds.img_size, device=dev)
        targets = torch.randn(size, batch, ds.num_classes, device=dev).softmax(-1)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(warmup):
            step(images, targets)
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(images, targets)
        sync(dev)
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None
        rows.append({"model": model, "mask": mask, "members": size, "compiled": compiled.report()["compiled"],
                     "img_s": size * batch * steps / seconds, "member_img_s": batch * steps / seconds,
                     "step_ms": 1000 * seconds / steps, "peak_mib": peak})
        del net, step
    return rows
