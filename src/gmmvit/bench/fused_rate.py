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

FUSED_HEADER = ["model", "mask", "members", "img/s, all members", "img/s per member", "step ms", "peak MiB", "compiled"]


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
        members = [fused.build_member(c).to(dev) for c in cfgs]
        ds = cfgs[0].dataset
        autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
        # each step draws every member's stochastic depth, as training does
        sites = fused.drop_path_sites(members[0], torch.zeros(2, ds.channels, ds.img_size, ds.img_size,
                                                                      device=dev), autocast)
        net = fused.FusedModel(members).train()
        compiled = Compiled(lambda images, keeps, net=net: net(images, keeps), compile, dev)
        step = fused.FusedStep(net, build_optimizer(cfgs[0].recipe, net), SoftTargetCrossEntropy(), autocast,
                               forward=compiled.model if compiled.mode else None)
        images = torch.randn(size, batch, ds.channels, ds.img_size, ds.img_size, device=dev)
        targets = torch.randn(size, batch, ds.num_classes, device=dev).softmax(-1)

        def keeps() -> dict:
            return fused.stacked_keep_masks([fused.draw_keep_masks(sites, batch, dev) for _ in range(size)])

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(warmup):
            step(images, targets, keeps())
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(images, targets, keeps())
        sync(dev)
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None
        taken = ",".join(dict.fromkeys(c.mask.name for c in cfgs))  # the masks this group's members have
        rows.append({"model": model, "mask": taken, "members": size, "compiled": compiled.report()["compiled"],
                     "img_s": size * batch * steps / seconds, "member_img_s": batch * steps / seconds,
                     "step_ms": 1000 * seconds / steps, "peak_mib": peak})
        del net, step
    return rows
