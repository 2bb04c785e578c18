"""Transformer building blocks shared by the architectures (timm layers + MaskedAttention)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from gmmvit.nn.attention import MaskedAttention
from gmmvit.nn.masks import AttentionMask


class MaskedBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), x + mlp(norm(x)), optional LayerScale."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, mask: Optional[AttentionMask] = None,
                 head_dim: Optional[int] = None, qkv_bias: bool = False, drop_path: float = 0.0,
                 init_values: Optional[float] = None, project_out: bool = True,
                 norm_layer=nn.LayerNorm, act_layer=nn.GELU):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = MaskedAttention(dim, num_heads=num_heads, head_dim=head_dim, qkv_bias=qkv_bias,
                                    mask=mask, project_out=project_out)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, hidden_features=mlp_hidden, act_layer=act_layer)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        # one module per call site, each a fixed name a fused model hands its draws to
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def halved_grid(grid: int) -> int:
    """The grid after a 3x3, stride-2, padding-1 convolution or soft split (PiT's pooling, T2T's splits)."""
    return (grid - 1) // 2 + 1


def drop_path_rates(rate: float, depth: int, schedule: str = "constant") -> list[float]:
    """Per-block stochastic depth. The authors use one rate for every block ("constant");
    "linear" is the DeiT/timm ramp from 0 to ``rate``."""
    if schedule == "constant":
        return [rate] * depth
    if schedule == "linear":
        return [rate * i / max(depth - 1, 1) for i in range(depth)]
    raise ValueError(f"drop_path_schedule must be 'constant' or 'linear', got {schedule!r}")


def init_authors_(module: nn.Module) -> None:
    """The authors' initialisation: xavier-normal Linear/Conv weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_patch_conv_as_linear_(conv: nn.Conv2d) -> None:
    """Xavier-normal as for the authors' ``Linear(in_chans * p * p, dim)`` patch embedding.

    timm's PatchEmbed is the equivalent conv, but a conv's xavier fan-out counts p * p times
    too many outputs, which would start its weights about p times smaller than theirs.
    """
    fan_in, fan_out = conv.weight[0].numel(), conv.out_channels
    nn.init.normal_(conv.weight, std=math.sqrt(2.0 / (fan_in + fan_out)))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
