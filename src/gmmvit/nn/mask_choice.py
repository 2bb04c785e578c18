"""Runs that differ in their masks, stacked as one model: at each attention layer, every member's
own mask picked out of the group's masks by a one-hot buffer.

``torch.func.stack_module_state`` stacks models whose parameters have the same names and shapes.
Runs of one architecture that differ only in the mask (``none``, ``elm``, ``gmm``, or a mask's
options) share everything but their masks, so ``with_mask_choices`` gives every member, at each
layer where the group's masks differ, the same list: the group's distinct masks at that layer in
the order members first bring them, the member's own in its slot and zero-filled copies of the
others, plus a one-hot ``pick`` naming its own. Under ``vmap`` the pick is each member's own.

Exact, bit for bit: the picked mask enters with weight 1 and every other with weight 0, and a
zero-filled mask is finite (GMM's sigma at 0 meets its 1e-5 guard; ELM's zeros are its init), so
``1 * x + 0 * y == x``. Each member computes its own mask's function, and the masks it does not own
get zero gradients (AdamW, weight decay included, keeps zeros at zero).
"""

from __future__ import annotations

import copy
from itertools import chain
from typing import Sequence

import torch
from torch import nn

from gmmvit.nn.masks import AttentionMask


def mask_signature(mask: AttentionMask) -> tuple:
    """What makes two masks the same function of their parameters: class, settings, tensor shapes."""
    tensors = chain(mask.named_parameters(), mask.named_buffers())
    return (type(mask).__name__, mask.extra_repr(), tuple((n, tuple(t.shape), t.dtype) for n, t in tensors))


def _neutral(mask: AttentionMask) -> bool:
    """A mask that leaves the softmax's output alone (placement ``pre``, or no mask at all)."""
    return mask.kind == "none" or mask.placement == "pre"


class MaskChoice(AttentionMask):
    """One of ``choices``, the one ``pick`` (one-hot) names; the others weigh zero."""

    kind = "choice"

    def __init__(self, choices: Sequence[AttentionMask], picked: int):
        first = choices[0]
        super().__init__(first.num_heads, first.grid_size, first.num_prefix_tokens)
        self.choices = nn.ModuleList(choices)
        self.register_buffer("pick", torch.eye(len(choices))[picked], persistent=False)
        combines = {c.combine for c in choices if c.kind != "none"} or {"mul"}
        # all before the softmax and combined one way: weigh the small [H, N, N] masks, not the scores
        self.blend_masks = len(combines) == 1 and all(_neutral(c) for c in choices)
        self.combine = combines.pop() if self.blend_masks else "mixed"
        self.renormalises = not all(_neutral(c) for c in choices)
        self.placement = "post" if self.renormalises else "pre"  # a post choice keeps it off the fused kernels

    def full(self) -> torch.Tensor:
        """The picked mask over all tokens, where the choices combine one way before the softmax
        (what SDPA or FlexAttention take); mixed choices have no one mask."""
        if not self.blend_masks:
            raise ValueError("masks that combine or sit differently have no one mask: use attention=explicit")
        return self._weighed_mask(1.0)

    def _weighed_mask(self, scale: float) -> torch.Tensor:
        identity = 1.0 if self.combine == "mul" else 0.0
        total = 0
        for i, c in enumerate(self.choices):
            m = identity if c.kind == "none" else c.full()
            total = total + self.pick[i] * (m * scale if self.combine == "mul" else m)
        return total

    def forward(self, scores: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if self.blend_masks:
            m = self._weighed_mask(scale).to(scores.dtype)
            return scores * m if self.combine == "mul" else scores * scale + m
        return sum(self.pick[i].to(scores.dtype) * c(scores, scale) for i, c in enumerate(self.choices))

    def after_softmax(self, attn: torch.Tensor) -> torch.Tensor:
        if not self.renormalises:
            return attn
        return sum(self.pick[i].to(attn.dtype) * c.after_softmax(attn) for i, c in enumerate(self.choices))

    def extra_repr(self) -> str:
        return f"choices={len(self.choices)}, blend={'masks' if self.blend_masks else 'outputs'}"


def mask_paths(model: nn.Module) -> list[str]:
    """Where a model's masks sit (each attention layer's), in module order."""
    paths: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, AttentionMask) and not any(name.startswith(f"{p}.") for p in paths):
            paths.append(name)
    return paths


def _zero_filled(mask: AttentionMask) -> AttentionMask:
    filler = copy.deepcopy(mask)
    with torch.no_grad():
        for p in filler.parameters():
            p.zero_()
    return filler


def with_mask_choices(models: Sequence[nn.Module]) -> list[dict[str, str]]:
    """Give every model, in place, the same masks at every layer where the models' masks differ
    (module docstring). Returns, per model, its own ``state_dict`` keys mapped to the keys they
    have now."""
    own_keys = [list(m.state_dict().keys()) for m in models]
    moved: list[dict[str, str]] = [{} for _ in models]  # per model: old prefix -> new prefix
    for path in mask_paths(models[0]):
        parent, _, attr = path.rpartition(".")
        masks = [m.get_submodule(path) for m in models]
        signatures = [mask_signature(mask) for mask in masks]
        distinct = list(dict.fromkeys(signatures))
        if len(distinct) == 1:
            continue
        templates = [masks[signatures.index(s)] for s in distinct]
        for g, model in enumerate(models):
            picked = distinct.index(signatures[g])
            choices = [masks[g] if i == picked else _zero_filled(t) for i, t in enumerate(templates)]
            setattr(model.get_submodule(parent), attr, MaskChoice(choices, picked))
            moved[g][f"{path}."] = f"{path}.choices.{picked}."
    return [{key: _moved(key, moved[g]) for key in own_keys[g]} for g in range(len(models))]


def _moved(key: str, prefixes: dict[str, str]) -> str:
    for old, new in prefixes.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


__all__ = ["MaskChoice", "mask_paths", "mask_signature", "with_mask_choices"]
