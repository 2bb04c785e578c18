"""Swin at the paper's configuration (the authors' `swin`).

patch 2 at 32 px (4 at 64 px), embed 96, depths (2, 6, 4), heads (3, 6, 12)
(head dim 32), window 4, MLP ratio 2, qkv bias, LayerNorm after the patch
embedding, a learned absolute position embedding, relative position bias in
every window, shifted windows (shift 2) in every second block, patch merging
between stages, mean pool: 7,073,188 parameters on CIFAR-10, as theirs.
The last stage's 4x4 map is a single window, so it never shifts (as theirs).

Built from timm's ``PatchEmbed`` (NHWC output), ``PatchMerging``,
``window_partition``/``window_reverse``, ``get_relative_position_index``,
``Mlp`` and ``DropPath``. timm's ``WindowAttention`` and
``SwinTransformerBlock`` are not used: their forward has no place for a mask
between ``QK^T * scale`` and the relative position bias (where the authors
apply it), so the window attention here is ``MaskedAttention`` plus timm's
bias table, and the block is a few lines. Parameter shapes match timm's and
the authors' one for one (timm's PatchMerging orders the four merged
patches differently: a permutation of input channels, same model).

The mask spans the 4x4 window (16 tokens). The authors apply it to the
scores before adding the relative position bias and the shift mask;
``MaskedAttention.attend`` does the same with both as ``extra_bias``. All
windows of a batch go through one call, so each layer computes its mask
once per forward. Their Swin never got the ELM flag; here ELM works like
everywhere else (one 16x16 weight per window-attention layer).

Their Swin keeps PyTorch's default init for Linear/Conv (no xavier pass, unlike
their ViT/CaiT) and trunc-normal(0.02) for the two position tables; so here.
Stochastic depth ramps linearly from 0 to ``drop_path`` over the 12 blocks,
as theirs (``drop_path_schedule='constant'`` for one rate everywhere).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from timm.models.swin_transformer import (PatchMerging, get_relative_position_index,
                                          window_partition, window_reverse)
from torch import nn

from gmmvit.errors import ConfigError
from gmmvit.nn.attention import MaskedAttention
from gmmvit.nn.blocks import drop_path_rates
from gmmvit.nn.models.checks import check_divisible, check_pool


def shifted_window_mask(size: int, window: int, shift: int) -> torch.Tensor:
    """[nW, 1, N, N] additive mask (0 / -100, as Swin) that keeps the rolled-in border
    regions of a shifted window from attending to each other."""
    region = torch.zeros(1, size, size, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (h, w) in enumerate((h, w) for h in cuts for w in cuts):
        region[:, h, w] = i
    ids = window_partition(region, (window, window)).flatten(1)  # [nW, N]
    differs = ids.unsqueeze(1) != ids.unsqueeze(2)
    return (differs.float() * -100.0).unsqueeze(1)


class WindowAttention(MaskedAttention):
    """MaskedAttention over the windows of an NHWC map, plus Swin's relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: int, mask=None, qkv_bias: bool = True):
        super().__init__(dim, num_heads=num_heads, qkv_bias=qkv_bias, mask=mask)
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index",
                             get_relative_position_index(window, window).flatten(), persistent=False)

    def forward(self, x: torch.Tensor, shift_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, H, W, C = x.shape
        ws, n = self.window, self.window ** 2
        windows = window_partition(x, (ws, ws)).view(B, -1, n, C)
        nw = windows.shape[1]
        # keep (batch, window) as two dims so the [nW, ...] shift mask broadcasts without a copy per image
        qkv = self.qkv(windows).view(B, nw, n, 3, self.num_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)
        if shift_mask is not None:
            bias = bias + shift_mask
        out = self.attend(q, k, v, bias.to(q.dtype))                  # [B, nW, heads, N, d]
        out = self.proj(out.transpose(2, 3).reshape(B * nw, ws, ws, C))
        return self.proj_drop(window_reverse(out, (ws, ws), H, W))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, size: int, window: int, shift: int,
                 mlp_ratio: float, drop_path: float, mask_factory: Optional[Callable]):
        super().__init__()
        self.shift = shift
        mask = mask_factory(num_heads=num_heads, grid_size=window, num_prefix_tokens=0) if mask_factory else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, mask=mask)
        # one module per call site (as MaskedBlock's), each a fixed name a fused model hands its draws to
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio))
        self.register_buffer("shift_mask", shifted_window_mask(size, window, shift) if shift else None,
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, W, C]
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(y, self.shift_mask)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path1(y)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class Swin(nn.Module):
    def __init__(self, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 patch_size: Optional[int] = None, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 6, 4), num_heads: Sequence[int] = (3, 6, 12),
                 window_size: int = 4, mlp_ratio: float = 2.0, drop_path: float = 0.1,
                 drop_path_schedule: str = "linear", pool: str = "mean",
                 mask: Optional[Callable] = None):
        super().__init__()
        check_pool("swin", pool, "mean", "has no class token (mean pool for every mask)")
        patch_size = patch_size or (2 if img_size <= 32 else 4)
        depths, num_heads = tuple(depths), tuple(num_heads)   # hydra hands over ListConfigs
        if len(depths) != len(num_heads):
            raise ConfigError(f"swin: depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        check_divisible("swin", img_size, patch_size, "patch size")
        grid = img_size // patch_size
        # every stage map must split into whole windows (the last one may be a single smaller window)
        check_divisible("swin", img_size, patch_size * window_size * 2 ** (len(depths) - 1),
                        "patch size x window x 2^(stages-1)")
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim,
                                      norm_layer=nn.LayerNorm, output_fmt="NHWC")
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        trunc_normal_(self.absolute_pos_embed, std=0.02)
        dpr = drop_path_rates(drop_path, sum(depths), drop_path_schedule)
        stages, dim, size = [], embed_dim, grid
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            if i:
                stages.append(PatchMerging(dim))
                dim, size = dim * 2, size // 2
            window = min(window_size, size)
            # a map no bigger than the window is one window: shifting it would only wrap tokens around
            shift = window // 2 if size > window else 0
            stages.extend(SwinBlock(dim, heads, size, window, shift if j % 2 else 0, mlp_ratio,
                                    dpr[sum(depths[:i]) + j], mask)
                          for j in range(depth))
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layers(self.patch_embed(x) + self.absolute_pos_embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(1, 2)))
