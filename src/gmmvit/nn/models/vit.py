"""ViT at the paper's configuration (the authors' `vit`).

patch 4 at 32 px (8 at 64 px), dim 192, depth 9, 12 heads of 16, MLP ratio 2,
qkv without bias: 2,692,426 parameters on CIFAR-10, the same count as timm's
``VisionTransformer`` in that configuration. Built from timm's ``PatchEmbed``
and ``Mlp``/``DropPath`` (via ``MaskedBlock``) rather than timm's
``VisionTransformer`` class, because that class only accepts an attention
*class* for all blocks, while each of our blocks owns its mask instance.

Pooling (``pool='auto'``) follows the authors: the class token for plain
attention, mean over tokens (class token dropped) for the GMM/ELM variants.
``pool='token'`` or ``pool='mean'`` forces either one for every mask (the
pooling ablation, ``conf/experiment/ablation/pooling.yaml``: it separates the
mask's gain from the pooling change the authors make with it). ``model.pool``
is a choice on ViT and PiT, the two models whose class token meets the mask;
Swin and T2T mean-pool and CaiT's class token joins after the masked layers,
whatever the mask, so their ``pool`` is fixed.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from timm.layers import PatchEmbed
from torch import nn

from gmmvit.nn.blocks import MaskedBlock, drop_path_rates, init_authors_, init_patch_conv_as_linear_
from gmmvit.nn.masks import is_masked
from gmmvit.nn.models.checks import check_divisible, resolve_pool


class ViT(nn.Module):
    def __init__(self, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 patch_size: Optional[int] = None, embed_dim: int = 192, depth: int = 9,
                 num_heads: int = 12, head_dim: Optional[int] = None, mlp_ratio: float = 2.0,
                 qkv_bias: bool = False, drop_path: float = 0.1,
                 drop_path_schedule: str = "constant", pool: str = "auto",
                 mask: Optional[Callable] = None):
        super().__init__()
        patch_size = patch_size or (4 if img_size <= 32 else 8)
        check_divisible("vit", img_size, patch_size, "patch size")
        grid = img_size // patch_size
        self.pool = resolve_pool(pool, is_masked(mask))
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_prefix = 1 if self.pool == "token" else 0
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim)) if num_prefix else None
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + num_prefix, embed_dim))
        # the class token is part of the attention (the authors' plain ViT masks nothing): a mask on
        # a class-token model spans the grid and leaves the class row/column untouched
        dpr = drop_path_rates(drop_path, depth, drop_path_schedule)
        self.blocks = nn.Sequential(*[
            MaskedBlock(embed_dim, num_heads, int(embed_dim * mlp_ratio), head_dim=head_dim,
                        qkv_bias=qkv_bias, drop_path=dpr[i],
                        mask=mask(num_heads=num_heads, grid_size=grid, num_prefix_tokens=num_prefix)
                        if mask is not None else None)
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        init_authors_(self)
        init_patch_conv_as_linear_(self.patch_embed.proj)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.blocks(x + self.pos_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = x[:, 0] if self.pool == "token" else x.mean(dim=1)
        return self.head(self.norm(x))
