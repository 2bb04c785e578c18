"""T2T-ViT at the paper's configuration (the authors' `t2t`).

Tokens-to-token module: 3x3 stride-2 soft splits (``nn.Unfold``), two at
32 px and three at 64 px, with a one-head token transformer (width 64, MLP
ratio 1) after each split but the last, then a Linear to 256; 12 blocks of 4
heads, MLP ratio 2, a fixed sinusoidal position embedding, and mean pooling
after the final norm (no class token, for every mask): 6,486,080 parameters
on CIFAR-10, exactly the authors' count. Masks go in the token transformers
(16x16 at 32 px; 32x32 and 16x16 at 64 px) and in all 12 blocks (8x8).

There is no T2T in timm, so this is own code from timm's ``Mlp`` and the
project's ``MaskedAttention``/``MaskedBlock``. Quirks of the authors' code
kept on purpose, because they change the function or the counts:
- the token transformer's attention maps the input width to 64, scales the
  scores by input_width**-0.5 (not 64**-0.5), projects 64 -> 64, and its
  residual is v (the input has another width);
- the 12 blocks reuse that attention class, which adds its (normalised) input
  back: x + drop_path(attn(norm1(x)) + norm1(x));
- a class token and the T2T module's LayerNorm(576) are registered but never
  used (``unused_params=True`` keeps them so the trainable count is theirs;
  they get no gradient, so they never change);
- stochastic depth ramps linearly from 0 to ``drop_path`` over the blocks,
  and the token transformers have none.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from timm.layers import Mlp
from torch import nn

from gmmvit.nn.attention import MaskedAttention
from gmmvit.nn.blocks import MaskedBlock, drop_path_rates, halved_grid
from gmmvit.nn.masks import AttentionMask
from gmmvit.nn.models.checks import check_divisible, check_pool


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (2 * (torch.arange(dim) // 2) / dim)
    angle[:, 0::2] = angle[:, 0::2].sin()
    angle[:, 1::2] = angle[:, 1::2].cos()
    return angle.float()[None]


class TokenTransformer(nn.Module):
    """One-head transformer whose attention changes the width (dim -> token_dim).

    Sits between two soft splits: takes Unfold's [B, dim, L], returns the [B, token_dim, g, g] map."""

    def __init__(self, dim: int, token_dim: int, grid: int, mask: Optional[AttentionMask] = None):
        super().__init__()
        self.grid = grid
        self.norm1 = nn.LayerNorm(dim)
        # qkv and the mask/attention paths come from MaskedAttention; the output is reassembled here
        self.attn = MaskedAttention(dim, num_heads=1, head_dim=token_dim, mask=mask, project_out=False)
        self.proj = nn.Linear(token_dim, token_dim)
        # attend() scales by token_dim**-0.5 (in both its paths); the authors scale by dim**-0.5
        self.q_rescale = math.sqrt(token_dim / dim)
        self.norm2 = nn.LayerNorm(token_dim)
        self.mlp = Mlp(token_dim, token_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        B, N, _ = x.shape
        q, k, v = self.attn.qkv(self.norm1(x)).reshape(B, N, 3, 1, -1).permute(2, 0, 3, 1, 4).unbind(0)
        x = v[:, 0] + self.proj(self.attn.attend(q * self.q_rescale, k, v)[:, 0])
        x = x + self.mlp(self.norm2(x))
        return x.transpose(1, 2).reshape(B, -1, self.grid, self.grid)


class T2TBlock(MaskedBlock):
    """The authors' blocks reuse the token transformer's attention, which returns proj(...) + its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop_path1(self.attn(h) + h)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class T2T(nn.Module):
    def __init__(self, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 num_splits: Optional[int] = None, token_dim: int = 64, embed_dim: int = 256,
                 depth: int = 12, num_heads: int = 4, mlp_ratio: float = 2.0, qkv_bias: bool = False,
                 drop_path: float = 0.1, drop_path_schedule: str = "linear", unused_params: bool = True,
                 pool: str = "mean", mask: Optional[Callable] = None):
        super().__init__()
        check_pool("t2t", pool, "mean", "reads no class token (mean pool for every mask)")
        num_splits = num_splits or (2 if img_size <= 32 else 3)
        check_divisible("t2t", img_size, 2 ** num_splits, "total soft-split stride")

        def make_mask(heads, grid):
            return mask(num_heads=heads, grid_size=grid, num_prefix_tokens=0) if mask is not None else None

        layers, grid, width = [], img_size, in_chans
        for i in range(num_splits):
            layers.append(nn.Unfold(3, stride=2, padding=1))
            grid, width = halved_grid(grid), width * 9
            if i < num_splits - 1:
                layers.append(TokenTransformer(width, token_dim, grid, make_mask(1, grid)))
                width = token_dim
        self.soft_split = nn.Sequential(*layers)
        self.t2t_norm = nn.LayerNorm(width) if unused_params else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if unused_params else None
        self.project = nn.Linear(width, embed_dim)
        self.register_buffer("pos_embed", sinusoid_table(grid * grid, embed_dim), persistent=False)
        dpr = drop_path_rates(drop_path, depth, drop_path_schedule)
        self.blocks = nn.Sequential(*[
            T2TBlock(embed_dim, num_heads, int(embed_dim * mlp_ratio), qkv_bias=qkv_bias,
                     drop_path=dpr[i], mask=make_mask(num_heads, grid))
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        if self.cls_token is not None:  # unused, but drawn like T2T-ViT's so the init's RNG sequence matches
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # the authors' T2T keeps T2T-ViT's init (truncated normal 0.02), not the xavier of their other models
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(self.soft_split(x).transpose(1, 2))
        return self.norm(self.blocks(x + self.pos_embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=1))
