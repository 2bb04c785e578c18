"""Fused runs: G runs of one architecture trained as one model, each kernel doing the work of all.

HFTA's idea (Wang et al., MLSys 2021) by ``torch.func``: every member is built exactly as the
unfused ``train()`` builds it at its own seed, then their parameters and buffers are stacked along
a leading member axis (``stack_module_state``) and one forward runs all of them
(``vmap(functional_call)``). The loss that is backpropagated is the sum of the members' own
losses, so each member's slice of a stacked gradient is its own gradient; AdamW is elementwise, so
one optimizer over the stacked tensors updates each member as its own optimizer would. Gradient
clipping, when the recipe sets it, is per member (each member's own norm over all its parameters).

The attention runs the explicit path: SDPA's backward has no vmap batching rule, and FlexAttention
under vmap is not fused. Members may differ in their masks (``none``, ``elm``, ``gmm`` and the
masks' options): every member gets the group's masks, its own picked (``gmmvit.nn.mask_choice``).
Everything else must stack: the same parameters and buffers, names and shapes, and the same module
settings (``structure``). ViT pools by its class token without a mask and by the mean with one
(the authors'), so its unmasked and masked runs differ in parameters and fuse in separate groups.

Each member draws what the unfused run draws, exactly: its loader at its seed
(``gmmvit.run.loaders``) and, from the run's own stream (``seed_data_stream``, held by
``MemberRandom`` and saved in the member's checkpoint), its augmentation, its Mixup/CutMix and
then its stochastic depth. The run alone draws stochastic depth in its forward, each DropPath
(timm's ``drop_path``) a [B, 1, ...] keep mask in call order; a fused member draws the same masks
right after its Mixup/CutMix, where the run's stream then stands (``draw_keep_masks``, in the
order ``drop_path_sites`` learns from one forward of the member's model), and the fused model
multiplies by them (``GivenDropPath`` at each call site, the masks handed in as its buffers, so
under vmap each member sees its own). So with stochastic depth too a member trains as its run
alone does, epoch by epoch (``tests/test_fused_runs.py``: the same train loss and test top-1 on the
CPU in fp32), where the run alone is eager (a run alone compiled draws its masks its own way,
inside its compiled forward; a fused member's are drawn outside, eagerly). Only dropout
would still be drawn inside the vmapped forward (``randomness="different"``), from the group's
stream (``seed_group_stream``: from the members' seeds and the epoch, so a group resumed draws what
it drew uninterrupted); no model here sets a dropout rate.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from timm.layers import DropPath
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


def draws_drop_path(module: nn.Module) -> bool:
    return isinstance(module, DropPath) and module.drop_prob > 0  # timm's drop_path draws nothing at 0


class GivenDropPath(nn.Module):
    """A fused model's stochastic depth at one call site: in training, its input times the keep
    mask handed to it as its ``keep`` buffer (``draw_keep_masks``: what the member's run draws
    there), so the vmapped forward draws nothing of its own for it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("keep", torch.empty(0, device="meta"), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.keep if self.training else x


@dataclass(frozen=True)
class DropPathSite:
    """One DropPath call of a model's forward: what timm's ``drop_path`` draws there."""
    name: str  # the module's; its keep mask is handed to it as ``{name}.keep``
    keep_prob: float
    scale_by_keep: bool
    ndim: int  # of its input, [B, ...]: the mask is [B, 1, ...]
    dtype: torch.dtype  # of its input (under autocast, as in training), the mask's


def drop_path_sites(model: nn.Module, example: torch.Tensor, autocast: Callable) -> list[DropPathSite]:
    """``model``'s stochastic depth draws in the order its forward draws them, as its inputs reach
    them in one forward of ``example`` (a batch on the model's device, under ``autocast``). In eval
    mode, which draws nothing: the global random state is left as it was."""
    sites: list[DropPathSite] = []

    def record(name: str) -> Callable:
        def hook(module: DropPath, args: tuple) -> None:
            x = args[0]
            if x.shape[0] != example.shape[0] or any(s.name == name for s in sites):
                raise ValueError(f"{name}: a fused model hands each DropPath one [batch, 1, ...] mask per "
                                 "forward; give each call of a block its own DropPath, on the batch axis")
            sites.append(DropPathSite(name, 1 - module.drop_prob, module.scale_by_keep, x.ndim, x.dtype))
        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules() if draws_drop_path(m)]
    was_training = model.training
    try:
        with torch.no_grad(), autocast():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return sites


def draw_keep_masks(sites: Sequence[DropPathSite], batch_size: int, device) -> dict[str, torch.Tensor]:
    """One member's keep masks for one step, ``{site}.keep``: drawn site by site in the unfused
    forward's order from the global generator of ``device``, as timm's ``drop_path`` draws them
    (``x.new_empty((B, 1, ...)).bernoulli_(keep_prob)``, divided by ``keep_prob``)."""
    masks = {}
    for site in sites:
        keep = torch.empty((batch_size,) + (1,) * (site.ndim - 1), dtype=site.dtype, device=device)
        keep.bernoulli_(site.keep_prob)
        if site.keep_prob > 0 and site.scale_by_keep:
            keep.div_(site.keep_prob)
        masks[f"{site.name}.keep"] = keep
    return masks


def stacked_keep_masks(members: Sequence[dict]) -> dict[str, torch.Tensor]:
    """The members' keep masks (``draw_keep_masks`` each) as the fused model takes them: [G, B, 1, ...]."""
    return {key: torch.stack([masks[key] for masks in members]) for key in members[0]}


class FusedModel:
    """G models of one architecture as stacked tensors; ``self(images, keeps)`` maps [G, B, ...]
    images to [G, B, classes] logits, member g's batch through member g's weights and, in
    training, its stochastic depth through its slice of ``keeps`` (``{site}.keep``: [G, B, 1, ...]
    keep masks, ``draw_keep_masks`` of each member stacked; none where the models draw none)."""

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
        for name, module in list(self.base.named_modules()):
            if draws_drop_path(module):
                self.base.set_submodule(name, GivenDropPath())
        # per member: its own optimizer's parameter indices -> the stacked optimizer's
        order = {name: j for j, name in enumerate(self.params)}
        self.param_index = [[order[self.keys[g][name]] for name in names] for g, names in enumerate(own_params)]

    def _one(self, params: dict, buffers: dict, keeps: dict, images: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers, keeps), (images,))

    def __call__(self, images: torch.Tensor, keeps: Optional[dict] = None) -> torch.Tensor:
        return vmap(self._one, randomness="different")(self.params, self.buffers, keeps or {}, images)

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

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, keeps: Optional[dict] = None,
                 active: Optional[torch.Tensor] = None) -> torch.Tensor:
        with self.autocast():
            losses = member_losses(self.criterion, self.forward(images, keeps or {}), targets)
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
    """Start an epoch's group stream (dropout, where a model sets it: drawn inside the vmapped forward)
    from the members' seeds and the epoch alone. Nothing carries it from one epoch to the next, so
    a group stopped and relaunched draws in its later epochs what it would have drawn uninterrupted,
    with no state of its own to save in a member's checkpoint (each holds only its own run's)."""
    entropy = [int(epoch), *(int(s) for s in seeds)]
    torch.manual_seed(int(np.random.SeedSequence(entropy, spawn_key=(GROUP_STREAM,)).generate_state(1)[0]))


class MemberRandom:
    """A member's own random state (torch's CPU and CUDA generators, numpy, Python), swapped in
    for its draws: augmentation, Mixup/CutMix and stochastic depth draw from it the run's own
    stream (``seed_data_stream``), exactly what the run alone draws."""

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


def stacked_batches(loaders: Sequence, randoms: Sequence[MemberRandom], mixup=None,
                    sites: Optional[Sequence[Sequence[DropPathSite]]] = None, device=None):
    """(images [G, B, ...], targets [G, B, ...], keeps): member g's next batch from its own loader,
    drawn (and mixed) under its own random state, then, where ``sites`` gives each member's
    stochastic depth, its keep masks on ``device`` (``draw_keep_masks``) from that state as it then
    stands, where the run alone draws them in its forward; ends with the shortest loader."""
    iters = []
    for loader, rng in zip(loaders, randoms):
        with rng:
            iters.append(iter(loader))
    while True:
        images, targets, keeps = [], [], []
        for g, (it, rng) in enumerate(zip(iters, randoms)):
            with rng:
                try:
                    x, y = next(it)
                except StopIteration:
                    return
                if mixup is not None:
                    x, y = mixup(x, y)
                keeps.append(draw_keep_masks(sites[g], x.shape[0], device) if sites else {})
            images.append(x)
            targets.append(y)
        yield torch.stack(images), torch.stack(targets), stacked_keep_masks(keeps)
