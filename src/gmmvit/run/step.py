"""The training step - forward, loss, backward, optimizer - eager, or replayed as one CUDA graph.

At the paper's batch of 128 these models leave a GPU idle much of the time. Measured on an H200,
ViT-GMM's compiled step (compile=reduce-overhead) keeps the device busy 3.2 ms of every 6.4
(profile_steps); the rest is the host driving about 650 kernels through the autograd engine, the
compiled graphs' wrappers and the optimizer. ``GraphedStep`` captures the whole step once, after a
few warm-up steps, and from then on replays it: one launch per step (the same ViT-GMM, end to end
through train(): 34,500 img/s instead of 19,700). The arithmetic is the eager step's: the same
kernels on the same tensors (the batch is copied into the graph's input buffers; the learning rate,
which the scheduler changes every step, lives in a device tensor the captured optimizer reads).

``cfg.step_graph`` (default ``false`` until a GPU session shows its accuracy pair, README "GPU"):
``auto`` captures on CUDA when nothing forbids it (the compiled model must
not itself use CUDA graphs, i.e. not ``compile=reduce-overhead``; every batch must have one shape,
i.e. ``recipe.drop_last``); a step that fails to capture falls back to the eager step with a
warning. ``true`` insists (a failure ends the run), ``false`` never captures.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch

from gmmvit.errors import ConfigError

STEP_GRAPH = ("auto", "true", "false")
WARMUP_STEPS = 3  # eager steps on a side stream before capture (lazy state, cuBLAS workspaces)


class EagerStep:
    """``loss = criterion(model(images), targets)``; backward; optional clipping; optimizer step."""

    def __init__(self, model: torch.nn.Module, step_model: Callable, optimizer: torch.optim.Optimizer,
                 criterion: Callable, autocast: Callable, grad_clip: Optional[float] = None):
        self.model, self.step_model, self.optimizer = model, step_model, optimizer
        self.criterion, self.autocast, self.grad_clip = criterion, autocast, grad_clip
        self.kind = "eager"

    def _step(self, images: torch.Tensor, targets: torch.Tensor, set_to_none: bool = True) -> torch.Tensor:
        with self.autocast():
            loss = self.criterion(self.step_model(images), targets)
        self.optimizer.zero_grad(set_to_none=set_to_none)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._step(images, targets)


class GraphedStep(EagerStep):
    """The same step, captured once as a CUDA graph and replayed (see the module docstring)."""

    def __init__(self, *args, strict: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.strict, self.graph, self.warm = strict, None, 0
        self.kind = "cuda graph (pending)"
        self.lrs = [torch.tensor(float(g["lr"]), device=self._device()) for g in self.optimizer.param_groups]

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _capture(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.static_images, self.static_targets = images.clone(), targets.clone()
        floats = [g["lr"] for g in self.optimizer.param_groups]
        for group, lr in zip(self.optimizer.param_groups, self.lrs):
            lr.fill_(group["lr"])
            group["lr"] = lr  # captured by reference: later steps refill the tensor
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are born in the graph's pool
        try:
            with torch.cuda.graph(graph):
                self.static_loss = self._step(self.static_images, self.static_targets, set_to_none=False)
        finally:
            for group, lr in zip(self.optimizer.param_groups, floats):
                group["lr"] = lr  # the scheduler and the checkpoints keep seeing plain floats
        self.graph, self.kind = graph, "cuda graph"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            if self.kind.startswith("eager"):
                return self._step(images, targets)
            if self.warm < WARMUP_STEPS:
                if self.warm == 0:  # after any resume: load_state_dict replaces the groups' flags
                    for group in self.optimizer.param_groups:
                        group["capturable"] = True  # step counts and bias corrections stay on the device
                self.warm += 1
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    loss = self._step(images, targets)
                torch.cuda.current_stream().wait_stream(side)
                return loss
            try:
                self._capture(images, targets)
            except Exception as exc:  # noqa: BLE001 - auto: capturing is an optimisation, not the user's choice
                if self.strict:
                    raise
                self.graph = None
                self.kind = f"eager (capture failed: {type(exc).__name__})"
                warnings.warn(f"step_graph: capturing the training step failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); training eagerly")
                return self._step(images, targets)
        if images.shape != self.static_images.shape or targets.shape != self.static_targets.shape:
            raise RuntimeError(f"step_graph: batch of shape {tuple(images.shape)} after capturing "
                               f"{tuple(self.static_images.shape)}; set recipe.drop_last=true or step_graph=false")
        for group, lr in zip(self.optimizer.param_groups, self.lrs):
            lr.fill_(group["lr"])
        self.static_images.copy_(images)
        self.static_targets.copy_(targets)
        self.graph.replay()
        return self.static_loss


def step_graph_setting(setting, device: torch.device, compile_mode: Optional[str], drop_last: bool) -> Optional[str]:
    """``cfg.step_graph`` -> "strict", "auto" (capture, fall back on failure) or None (eager step)."""
    text = "auto" if setting is None else str(setting).lower()
    if text not in STEP_GRAPH:
        raise ConfigError(f"step_graph must be one of {STEP_GRAPH}, got {setting!r}")
    if text == "false":
        return None
    blockers = []
    if torch.device(device).type != "cuda":
        blockers.append("it needs CUDA")
    if compile_mode in ("reduce-overhead", "max-autotune"):
        blockers.append(f"compile={compile_mode} already uses CUDA graphs (use compile=true)")
    if not drop_last:
        blockers.append("recipe.drop_last=false gives a last batch of another shape")
    if blockers:
        if text == "true":
            raise ConfigError("step_graph=true cannot apply: " + "; ".join(blockers))
        return None
    return "strict" if text == "true" else "auto"


def build_step(how: Optional[str], model, step_model, optimizer, criterion, autocast,
               grad_clip: Optional[float]) -> EagerStep:
    """The step ``train()`` calls: eager, or graphed as ``step_graph_setting`` decided (``how``)."""
    if how is None:
        return EagerStep(model, step_model, optimizer, criterion, autocast, grad_clip)
    return GraphedStep(model, step_model, optimizer, criterion, autocast, grad_clip, strict=how == "strict")
