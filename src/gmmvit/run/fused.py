"""Fused runs: G runs of one architecture trained as one model, each kernel doing the work of all.

HFTA's idea (Wang et al., MLSys 2021) by ``torch.func``: every member is built exactly as the
unfused ``train()`` builds it at its own seed, then their parameters and buffers are stacked along
a leading member axis (``stack_module_state``) and one forward runs all of them
(``vmap(functional_call)``, ``randomness="different"``: each member draws its own dropout and
stochastic depth). The loss that is backpropagated is the sum of the members' own losses, so each
member's slice of a stacked gradient is its own gradient; AdamW is elementwise, so one optimizer
over the stacked tensors updates each member as its own optimizer would. Gradient clipping, when
the recipe sets it, is per member (each member's own norm over all its parameters).

The attention runs the explicit path: SDPA's backward has no vmap batching rule, and FlexAttention
under vmap is not fused. Members may differ in their masks (``none``, ``elm``, ``gmm`` and the
masks' options): every member gets the group's masks, its own picked (``gmmvit.nn.mask_choice``).
Everything else must stack: the same parameters and buffers, names and shapes, and the same module
settings (``structure``). ViT pools by its class token without a mask and by the mean with one
(the authors'), so its unmasked and masked runs differ in parameters and fuse in separate groups.

Each member draws the unfused run's data exactly: its loader at its seed (``gmmvit.run.loaders``)
and, for augmentation and Mixup/CutMix, the run's data stream (``seed_data_stream``, held by
``MemberRandom``). Only stochastic depth and dropout, drawn inside the vmapped forward, come from
the group's stream (``seed_group_stream``: from the members' seeds and the epoch, so a group resumed
draws what it drew uninterrupted): a member whose model draws nothing trains as its run alone does,
to rounding.
"""

from __future__ import annotations

import copy
import random
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gmmvit.errors import ConfigError
from gmmvit.nn.attention import use_attention
from gmmvit.nn.mask_choice import mask_paths, with_mask_choices
from gmmvit.run.train import build_model, seed_data_stream, seed_everything


def architecture(model: nn.Module) -> tuple:
    """What must match for models to stack: every parameter's and buffer's name, shape and dtype."""
    return tuple((kind, name, tuple(t.shape), t.dtype) for kind, named in
                 (("param", model.named_parameters()), ("buffer", model.named_buffers())) for name, t in named)


SETTING_TYPES = (bool, int, float, str, type(None))


def structure(model: nn.Module) -> tuple:
    """What must match, beyond the masks, for runs to fuse: the model's modules (class and plain
    settings such as a ViT's ``pool``), parameters and buffers, masks left out (they may differ)."""
    masks = tuple(f"{path}." for path in mask_paths(model))
    modules = tuple((name, type(m).__name__, tuple(sorted((k, v) for k, v in vars(m).items()
                                                          if not k.startswith("_") and isinstance(v, SETTING_TYPES))))
                    for name, m in model.named_modules() if not f"{name}.".startswith(masks))
    return modules + tuple(entry for entry in architecture(model) if not entry[1].startswith(masks))


def stacking_key(cfg) -> tuple:
    """``structure`` of the model ``cfg`` builds (on the CPU, which builds these small models faster
    than the meta device does; the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        return structure(build_model(cfg))


def build_member(cfg) -> nn.Module:
    """Member ``cfg`` as the unfused ``train()`` builds it: seeded, then built (the same init)."""
    seed_everything(cfg.seed, cfg.deterministic)
    return use_attention(build_model(cfg), "explicit")


class FusedModel:
    """G models of one architecture as stacked tensors; ``self(images)`` maps [G, B, ...] images
    to [G, B, classes] logits, member g's batch through member g's weights."""

    def __init__(self, models: Sequence[nn.Module]):
        own_params = [[name for name, _ in m.named_parameters()] for m in models]
        self.keys = with_mask_choices(models)  # per member: its own state_dict key -> the stacked one
        shapes = [architecture(m) for m in models]
        for g, shape in enumerate(shapes[1:], 1):
            if shape != shapes[0]:
                differ = next((b[:2] for a, b in zip(shapes[0], shape) if a != b), ("parameter", "count"))
                raise ConfigError(f"fused: member {g} does not stack with member 0 ({differ[0]} {differ[1]!r} "
                                  "differs); fuse only runs of one model, dataset and recipe")
        self.size = len(models)
        self.params, self.buffers = stack_module_state(list(models))
        self.base = copy.deepcopy(models[0]).to("meta")
        # per member: its own optimizer's parameter indices -> the stacked optimizer's
        order = {name: j for j, name in enumerate(self.params)}
        self.param_index = [[order[self.keys[g][name]] for name in names] for g, names in enumerate(own_params)]

    def _one(self, params: dict, buffers: dict, images: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (images,))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return vmap(self._one, randomness="different")(self.params, self.buffers, images)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> "FusedModel":
        self.base.train(mode)
        return self

    def to(self, device) -> "FusedModel":
        self.params = {k: v.detach().to(device).requires_grad_(v.requires_grad) for k, v in self.params.items()}
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        return self

    def member_state(self, g: int) -> dict:
        """Member g's own unstacked ``state_dict``: what its unfused model loads."""
        stacked = {**self.params, **self.buffers}
        return {own: stacked[key][g].detach().clone() for own, key in self.keys[g].items()}

    @torch.no_grad()
    def load_member(self, g: int, state: dict) -> None:
        stacked = {**self.params, **self.buffers}
        for own, key in self.keys[g].items():
            if own in state:
                stacked[key][g].copy_(state[own])


def member_losses(criterion: Callable, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[G] losses, member g's criterion on its own logits and targets."""
    return torch.stack([criterion(logits[g], targets[g]) for g in range(logits.shape[0])])


@torch.no_grad()
def clip_members_(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` for each member on its own: member g's norm over all its gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(2, dim=1) for g in grads]).norm(2, dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms


class FusedStep:
    """One training step of every member: forward, each member's loss, backward of their sum,
    per-member clipping, AdamW. Members not ``active`` (failed) get a zero gradient. ``forward``
    maps stacked images to stacked logits: the fused model itself, or it compiled
    (``gmmvit.run.compiling.Compiled``: ``cfg.compile`` as for a run alone)."""

    def __init__(self, fused: FusedModel, optimizer: torch.optim.Optimizer, criterion: Callable,
                 autocast: Callable, grad_clip: Optional[float] = None, forward: Optional[Callable] = None):
        self.fused, self.optimizer, self.criterion = fused, optimizer, criterion
        self.autocast, self.grad_clip = autocast, grad_clip
        self.forward = forward or fused
        self.kind = "fused eager" if forward is None else "fused"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 active: Optional[torch.Tensor] = None) -> torch.Tensor:
        with self.autocast():
            losses = member_losses(self.criterion, self.forward(images), targets)
        self.optimizer.zero_grad(set_to_none=True)
        kept = losses if active is None else torch.where(active, losses, torch.zeros_like(losses))
        kept.sum().backward()
        if active is not None:
            with torch.no_grad():
                for p in self.fused.parameters():
                    if p.grad is not None:
                        p.grad[~active] = 0
        if self.grad_clip:
            clip_members_(self.fused.parameters(), self.grad_clip)
        self.optimizer.step()
        return losses.detach()


GROUP_STREAM = 0x67524F55  # spawn key of the group's stream, apart from every run's init and data streams


def seed_group_stream(seeds: Sequence[int], epoch: int) -> None:
    """Start an epoch's group stream (stochastic depth and dropout, drawn inside the vmapped forward)
    from the members' seeds and the epoch alone. Nothing carries it from one epoch to the next, so
    a group stopped and relaunched draws in its later epochs what it would have drawn uninterrupted,
    with no state of its own to save in a member's checkpoint (each holds only its own run's)."""
    entropy = [int(epoch), *(int(s) for s in seeds)]
    torch.manual_seed(int(np.random.SeedSequence(entropy, spawn_key=(GROUP_STREAM,)).generate_state(1)[0]))


class MemberRandom:
    """A member's own random state (torch's CPU and CUDA generators, numpy, Python), swapped in
    for its data draws: augmentation and Mixup/CutMix draw from it the run's own data stream
    (``seed_data_stream``), exactly what the run alone draws where its model draws nothing."""

    def __init__(self, seed: int):
        saved = self._get()
        seed_data_stream(seed)
        self.state = self._get()
        self._set(saved)

    @staticmethod
    def _get():
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()

    @staticmethod
    def _set(state) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state_all(state[1])
        np.random.set_state(state[2])
        random.setstate(state[3])

    def __enter__(self) -> "MemberRandom":
        self.outside = self._get()
        self._set(self.state)
        return self

    def __exit__(self, *exc) -> None:
        self.state = self._get()
        self._set(self.outside)


def stacked_batches(loaders: Sequence, randoms: Sequence[MemberRandom], mixup=None):
    """(images [G, B, ...], targets [G, B, ...]): member g's next batch from its own loader, drawn
    (and mixed) under its own random state; ends with the shortest loader."""
    iters = []
    for loader, rng in zip(loaders, randoms):
        with rng:
            iters.append(iter(loader))
    while True:
        images, targets = [], []
        for it, rng in zip(iters, randoms):
            with rng:
                try:
                    x, y = next(it)
                except StopIteration:
                    return
                if mixup is not None:
                    x, y = mixup(x, y)
            images.append(x)
            targets.append(y)
        yield torch.stack(images), torch.stack(targets)
