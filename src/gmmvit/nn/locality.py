"""How local attention is: each layer's mean attention distance per head.

For a query token i and key tokens j of one attention map A (rows: queries), the distance is
``sum_j A[i, j] d(i, j) / sum_j A[i, j]`` over the grid tokens, ``d`` the Euclidean distance between
their positions on the layer's own token grid, in tokens (ViT, CaiT, T2T's blocks: the patch grid;
PiT: the stage's grid; T2T's token transformers: the soft split's grid; Swin: the window, whose
shifted border regions the shift mask already keeps from attending to each other). A layer's
figure per head is the mean over every query of every image (and window) of a batch.

Prefix tokens (a class token in ViT or PiT) are left out as queries and as keys; the share of
attention the grid queries give them is reported beside (``prefix_share``). Their keys' weight
is left out of the denominator too, so a head that looks mostly at the class token is not counted as
local. The maps are the ones applied to the values (CaiT: each softmax between its two
talking-heads mixes, the last map that is a distribution over keys); with ``mask.placement=post``
the GMM can make weights negative, and the distance is then the signed-weighted mean.

``AttentionLocality(model)`` attaches an observer to every such layer (``observer`` of
``MaskedAttention`` and CaiT's attention, None otherwise), which sees the maps only on the explicit
path: run the model with ``use_attention(model, "explicit")``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from gmmvit.errors import ConfigError
from gmmvit.nn.attention import MaskedAttention
from gmmvit.nn.masks import GaussianMixtureMask, squared_distance_grid
from gmmvit.nn.models.cait import TalkingHeadsAttention
from gmmvit.nn.models.pit import PiT
from gmmvit.nn.models.vit import ViT


def token_distances(grid: int) -> torch.Tensor:
    """[g*g, g*g] Euclidean distances between the tokens of a row-major g x g grid, in tokens."""
    return squared_distance_grid(grid).sqrt()


def uniform_distance(grid: int) -> float:
    """The mean distance of uniform attention over a g x g grid (every query, every key alike)."""
    return token_distances(grid).mean().item()


def grid_of(num_tokens: int, prefix: int) -> int:
    grid = math.isqrt(num_tokens - prefix)
    if grid * grid != num_tokens - prefix:
        raise ConfigError(f"an attention map over {num_tokens} tokens with {prefix} prefix token(s) "
                          "is not a square grid; the locality analysis needs one")
    return grid


def query_distances(attn: torch.Tensor, prefix: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, prefix share) of every grid query of ``attn`` [..., H, N, N], each [..., H, g*g]."""
    grid = grid_of(attn.shape[-1], prefix)
    a = attn.float()[..., prefix:, :]
    patches = a[..., prefix:]
    distance = (patches * token_distances(grid).to(a.device)).sum(-1) / patches.sum(-1)
    return distance, a[..., :prefix].sum(-1)


class LayerTally:
    """Running sums over the maps one layer produced: per head, distance and prefix share."""

    def __init__(self, prefix: int):
        self.prefix = prefix
        self.grid: Optional[int] = None
        self.windows = 1
        self.distance_sum: Optional[torch.Tensor] = None
        self.share_sum: Optional[torch.Tensor] = None
        self.queries = 0

    def add(self, attn: torch.Tensor) -> None:
        distance, share = query_distances(attn.detach(), self.prefix)
        heads = attn.shape[-3]
        distance = distance.movedim(-2, 0).reshape(heads, -1)
        share = share.movedim(-2, 0).reshape(heads, -1)
        if self.distance_sum is None:
            self.grid = grid_of(attn.shape[-1], self.prefix)
            self.windows = math.prod(attn.shape[1:-3])
            self.distance_sum = torch.zeros(heads, dtype=torch.float64)
            self.share_sum = torch.zeros(heads, dtype=torch.float64)
        self.distance_sum += distance.double().sum(1).cpu()
        self.share_sum += share.double().sum(1).cpu()
        self.queries += distance.shape[1]

    def summary(self) -> dict:
        heads = (self.distance_sum / self.queries).tolist()
        return {"grid": self.grid, "windows": self.windows, "prefix": self.prefix, "heads": heads,
                "mean": sum(heads) / len(heads), "uniform": uniform_distance(self.grid),
                "prefix_share": (self.share_sum / self.queries).tolist() if self.prefix else None}


def class_tokens(model: nn.Module) -> int:
    """Prefix tokens in the model's masked layers: the class token of ViT and PiT, when they keep one
    (T2T registers one it never uses; CaiT's joins only in its class-attention layers)."""
    return int(isinstance(model, (ViT, PiT)) and model.cls_token is not None)


def attention_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, attention module) of every self-attention layer over the token grid, in order;
    CaiT's class-attention layers (one class-token query over the patches) excluded."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (MaskedAttention, TalkingHeadsAttention)) and not name.startswith("cls_blocks.")]


def gmm_parameters(attention: nn.Module) -> Optional[dict]:
    """The layer's learned GMM, ``sigma`` and ``alpha`` as [kernel][head] lists, or None."""
    mask = getattr(attention, "mask", None)
    if not isinstance(mask, GaussianMixtureMask):
        return None
    return {"sigma": mask.sigma.detach().float().reshape(mask.num_kernels, -1).tolist(),
            "alpha": mask.alpha.detach().float().reshape(mask.num_kernels, -1).tolist()}


class AttentionLocality:
    """``with AttentionLocality(model) as locality: model(images)`` then ``locality.layers()``."""

    def __init__(self, model: nn.Module):
        prefix = class_tokens(model)
        self.modules = attention_layers(model)
        self.tallies = {name: LayerTally(prefix) for name, _ in self.modules}

    def __enter__(self) -> "AttentionLocality":
        for name, module in self.modules:
            module.observer = self.tallies[name].add
        return self

    def __exit__(self, *exc) -> None:
        for _, module in self.modules:
            module.observer = None

    def layers(self) -> list[dict]:
        """One entry per layer: name, grid, heads (mean distance per head), mean, uniform, prefix_share, gmm."""
        silent = [name for name, tally in self.tallies.items() if not tally.queries]
        if silent:
            raise ConfigError(f"no attention map reached {silent[0]} (and {len(silent) - 1} more): the analysis "
                              "needs the explicit path, use_attention(model, 'explicit')")
        return [{"layer": name, **self.tallies[name].summary(), "gmm": gmm_parameters(module)}
                for name, module in self.modules]
