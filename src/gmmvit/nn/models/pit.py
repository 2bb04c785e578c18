"""PiT at the paper's configuration (the authors' `pit`).

patch 2 at 32 px (4 at 64 px), stage dims (96, 192, 384), depths (2, 6, 4),
heads (2, 4, 8) of 48, MLP ratio 2, qkv without bias, a class token, and
between stages a depthwise 3x3 stride-2 conv followed by a 1x1 conv (class
token through a Linear): 6,972,586 parameters on CIFAR-10, exactly the
authors' count. Every block is masked on its patch-to-patch scores (the class
token is a prefix token the mask leaves alone), on 16x16, 8x8 and 4x4 grids.

Own code from timm's ``PatchEmbed`` and ``MaskedBlock`` rather than
``timm.models.pit``: timm's PiT differs from the authors' model (padded
overlapping patch conv, position embedding added on the 2-D map without a
class slot, pooling without the 1x1 conv), so its counts and behaviour would
not be the authors', and its blocks take no per-layer mask.

Stochastic depth follows the authors: one rate (``--sd``) for every block.

Pooling (``pool``): ``token`` is the authors' PiT for every mask (the class
token, which the mask leaves untouched, is read out). ``mean`` drops the class
token (and its Linear between stages) and mean-pools the patch tokens, as the
authors' GMM/ELM ViT does: with it the pooling ablation asks the ViT question
on PiT.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from timm.layers import PatchEmbed
from torch import nn

from gmmvit.errors import ConfigError
from gmmvit.nn.blocks import MaskedBlock, drop_path_rates, halved_grid, init_authors_
from gmmvit.nn.models.checks import READOUTS, check_divisible


class ConvPool(nn.Module):
    """Halves the grid and doubles the width; the class token (if any) goes through its own Linear."""

    def __init__(self, dim: int, grid: int, has_cls: bool = True):
        super().__init__()
        self.grid = grid
        self.conv = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1, groups=dim),
            nn.Conv2d(2 * dim, 2 * dim, 1))
        self.cls_fc = nn.Linear(dim, 2 * dim) if has_cls else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix = 1 if self.cls_fc is not None else 0
        tokens = x[:, prefix:]
        B, N, C = tokens.shape
        tokens = self.conv(tokens.transpose(1, 2).reshape(B, C, self.grid, self.grid)).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_fc(x[:, :1]), tokens], dim=1) if prefix else tokens


class PiT(nn.Module):
    def __init__(self, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 patch_size: Optional[int] = None, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 6, 4), num_heads: Sequence[int] = (2, 4, 8),
                 head_dim: int = 48, mlp_ratio: float = 2.0, qkv_bias: bool = False,
                 drop_path: float = 0.1, drop_path_schedule: str = "constant", pool: str = "token",
                 mask: Optional[Callable] = None):
        super().__init__()
        if pool not in READOUTS:
            raise ConfigError(f"model=pit: pool must be 'token' (the authors') or 'mean', got {pool!r}")
        self.pool = pool
        patch_size = patch_size or (2 if img_size <= 32 else 4)
        check_divisible("pit", img_size, patch_size, "patch size")
        grid = img_size // patch_size
        num_prefix = 1 if pool == "token" else 0
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim)) if num_prefix else None
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + num_prefix, embed_dim))
        dpr = iter(drop_path_rates(drop_path, sum(depths), drop_path_schedule))
        stages, dim = [], embed_dim
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            layers = [MaskedBlock(dim, heads, int(dim * mlp_ratio), head_dim=head_dim, qkv_bias=qkv_bias,
                                  drop_path=next(dpr),
                                  mask=mask(num_heads=heads, grid_size=grid, num_prefix_tokens=num_prefix)
                                  if mask is not None else None)
                      for _ in range(depth)]
            if i < len(depths) - 1:
                layers.append(ConvPool(dim, grid, has_cls=bool(num_prefix)))
                grid, dim = halved_grid(grid), 2 * dim
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        init_authors_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.stages(x + self.pos_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.head(self.norm(x[:, 0] if self.pool == "token" else x.mean(dim=1)))
