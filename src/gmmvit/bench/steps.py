"""Train-step img/s for a model's masks, built through the project's own config, with the authors'
models in the same rotation when their checkout is given."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from gmmvit.bench.machine import compose, sync
from gmmvit.nn.attention import use_attention
from gmmvit.run.compiling import Compiled
from gmmvit.run.recipe import build_criterion, build_optimizer
from gmmvit.run.train import build_model


def time_train_steps(model: str, masks: Sequence[str], batch: int = 128, steps: int = 10, warmup: int = 2,
                     device: str = "cpu", precision: str = "fp32", compile="false",
                     attention: str = "auto", dataset: str = "cifar10",
                     overrides: Sequence[str] = (), authors: Optional[str] = None) -> list[dict]:
    """Median img/s of full training steps (forward, loss, backward, AdamW) on random images, one
    result per mask.

    The masks' steps alternate (none, gmm, none, gmm, ...), so a mask's overhead compares steps
    taken under the same machine load. With ``authors`` (a checkout of the authors' repository)
    their model of the same name and mask joins the rotation.
    """
    dev = torch.device(device)
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    runs, info = {}, {}
    for mask in masks:
        cfg = compose([f"model={model}", f"mask={mask}", f"dataset={dataset}", f"attention={attention}", *overrides])
        ds = cfg.dataset
        torch.manual_seed(0)
        nets = {"ours": build_model(cfg)}
        if authors:
            nets["authors"] = use_attention(authors_model(authors, model, mask, ds.num_classes, ds.img_size), attention)
        images = torch.randn(batch, ds.channels, ds.img_size, ds.img_size, device=dev)
        targets = torch.randint(0, ds.num_classes, (batch,), device=dev)
        criterion = build_criterion(cfg.recipe, None)
        for who, net in nets.items():
            net = net.to(dev).train()
            runs[(mask, who)] = _train_step(Compiled(net, compile, dev).model, build_optimizer(cfg.recipe, net),
                                            criterion, images, targets, dev, bf16)
        info[mask] = sum(p.numel() for p in nets["ours"].parameters() if p.requires_grad)
    times: dict = {key: [] for key in runs}
    losses: dict = {}
    for i in range(warmup + steps):
        for key, step in runs.items():
            sync(dev)
            t0 = time.perf_counter()
            losses[key] = step()
            sync(dev)
            if i >= warmup:
                times[key].append(time.perf_counter() - t0)
    results = []
    for mask in masks:
        step_s = statistics.median(times[(mask, "ours")])
        r = {"model": model, "mask": mask, "img_s": batch / step_s, "step_ms": 1000 * step_s,
             "params": info[mask], "loss": float(losses[(mask, "ours")].detach()), "batch": batch}
        if authors:
            r["authors_img_s"] = batch / statistics.median(times[(mask, "authors")])
        results.append(r)
    return results


def _train_step(step_net, optimizer, criterion, images, targets, dev, bf16):
    """One training step of ``step_net`` as a closure, for the rotation in ``time_train_steps``."""
    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(step_net(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def time_train_step(model: str, mask: str, **kwargs) -> dict:
    """``time_train_steps`` for one mask."""
    return time_train_steps(model, [mask], **kwargs)[0]


# --- the authors' code, side by side ---------------------------------------------------------------

# our model names -> the names the authors' create_model takes (the table's CaiT is their cait-tiny)
AUTHORS_MODEL_NAME = {"vit": "vit", "swin": "swin", "cait": "cait-tiny", "pit": "pit", "t2t": "t2t"}


def authors_checkout_problem(repo: str) -> Optional[str]:
    """What keeps ``--authors repo`` from working, naming the fix, or None."""
    import importlib.util

    if not (Path(repo) / "models" / "create_model.py").is_file():
        return (f"{repo} has no models/create_model.py: point --authors at a checkout of "
                "https://github.com/CatworldLee/Gaussian-Mixture-Mask-Attention")
    if importlib.util.find_spec("einops") is None:
        return "the authors' models need einops: pip install einops"
    return None


def authors_model(repo: str, model: str, mask: str, num_classes: int, img_size: int) -> torch.nn.Module:
    """The authors' model, built by their ``models.create_model`` as their main.py calls it (stochastic
    depth 0.1, 5 kernels). Needs a checkout of their repository and ``pip install einops``."""
    from types import SimpleNamespace

    if model not in AUTHORS_MODEL_NAME:
        raise ValueError(f"no authors' counterpart for model {model!r}")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from models.create_model import create_model  # the authors' package, from their checkout

    args = SimpleNamespace(model=AUTHORS_MODEL_NAME[model], sd=0.1, is_GMM=mask == "gmm", is_SLM=mask == "elm",
                           num_kernals=5)
    return create_model(img_size, num_classes, args)
