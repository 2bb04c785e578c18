"""CaiT at the paper's configuration (the authors' `cait-tiny`).

patch 4 at 32 px (8 at 64 px), dim 108, 24 patch-attention layers and 2
class-attention layers, 4 heads of 64 (inner dim 256 > dim), MLP hidden 384,
talking heads, LayerScale, q and kv without bias: 5,078,834 parameters on
CIFAR-10, as theirs.

Own attention and block on timm layers (``PatchEmbed``, ``Mlp``,
``LayerScale``, ``DropPath``) instead of timm's ``TalkingHeadAttn`` /
``ClassAttn`` / ``LayerScaleBlock*``, because the authors' CaiT differs from
timm's in ways that change parameters or the computation:
- head dim 64 independent of dim (timm: dim // heads = 27);
- talking-heads mixes are bias-free [H, H] matrices (timm: Linear with bias),
  and the class-attention layers have them too;
- class attention: the class token queries the *un-normalised* output of the
  patch layers, without itself among the keys (timm: normalised [cls, x]);
- LayerScale init depends on the layer's index inside its stack (0.1 for
  layers 1-18, 1e-5 for 19-24), not on the total depth.

The mask (on the 8x8 patch grid) sits in the 24 patch-attention layers only,
where the authors put it: on ``QK^T * scale`` *before* the pre-softmax
talking-heads mix, so each head's mask acts on that head's own scores. With
``mask.placement=post`` it multiplies the softmax's output instead (between the
two talking-heads mixes) and renormalises each row.
Plain attention cannot use fused SDPA here: talking heads need the explicit
score and attention maps.

Init as theirs: xavier-normal Linear weights, zero biases, N(0, 1) position
embedding, class token and talking-heads matrices. Stochastic depth: one rate
for every layer (theirs); ``drop_path_schedule='linear'`` ramps over all 26.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from timm.layers import DropPath, LayerScale, Mlp, PatchEmbed
from torch import nn

from gmmvit.nn import kernels
from gmmvit.nn.blocks import drop_path_rates, init_authors_, init_patch_conv_as_linear_
from gmmvit.nn.masks import AttentionMask, NoMask
from gmmvit.nn.models.checks import check_divisible, check_pool


class TalkingHeadsAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, mask: Optional[AttentionMask] = None):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        inner = num_heads * head_dim
        self.scale = head_dim ** -0.5
        self.q = nn.Linear(dim, inner, bias=False)
        self.kv = nn.Linear(dim, 2 * inner, bias=False)
        self.mix_pre = nn.Parameter(torch.randn(num_heads, num_heads))   # [from head, to head]
        self.mix_post = nn.Parameter(torch.randn(num_heads, num_heads))
        self.proj = nn.Linear(inner, dim)
        self.mask = mask if mask is not None else NoMask()
        self.observer = None  # sees each softmax map between the two mixes (gmmvit.nn.locality)

    @staticmethod
    def _mix(maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # mixed[g] = sum_h maps[h] * weight[h, g], as [H, H] @ [B, H, N*M]: no permuted copies of the maps
        return torch.matmul(weight.t(), maps.flatten(2)).view_as(maps)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        context = x if context is None else context
        B, N, _ = x.shape
        q = self.q(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).view(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        kernels.note_path(self, "explicit")  # talking heads mix the scores across heads: no fused kernel fits
        scores = self.mask(q @ k.transpose(-2, -1), self.scale)
        attn = self.mask.after_softmax(self._mix(scores, self.mix_pre).softmax(dim=-1))
        if self.observer is not None:
            self.observer(attn)
        attn = self._mix(attn, self.mix_post)
        out = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(out)


class CaiTBlock(nn.Module):
    """Pre-norm LayerScale block; with ``context`` it is a class-attention block."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_hidden: int, init_values: float,
                 drop_path: float, mask: Optional[AttentionMask] = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TalkingHeadsAttention(dim, num_heads, head_dim, mask)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=mlp_hidden)
        self.ls2 = LayerScale(dim, init_values)
        # one module per call site (as MaskedBlock's), each a fixed name a fused model hands its draws to
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), context)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def layer_scale_init(index: int) -> float:
    """The authors' LayerScale epsilon for the index-th (1-based) layer of a stack (CaiT paper sec. 2
    rule, applied per layer index as in their code)."""
    return 0.1 if index <= 18 else 1e-5 if index <= 24 else 1e-6


class CaiT(nn.Module):
    def __init__(self, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 patch_size: Optional[int] = None, embed_dim: int = 108, depth: int = 24,
                 cls_depth: int = 2, num_heads: int = 4, head_dim: int = 64, mlp_hidden: int = 384,
                 drop_path: float = 0.1, drop_path_schedule: str = "constant",
                 pool: str = "class_attention", mask: Optional[Callable] = None):
        super().__init__()
        check_pool("cait", pool, "class_attention",
                   "adds its class token only after the masked layers (class attention)")
        patch_size = patch_size or (4 if img_size <= 32 else 8)
        check_divisible("cait", img_size, patch_size, "patch size")
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, embed_dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
        dpr = drop_path_rates(drop_path, depth + cls_depth, drop_path_schedule)
        self.blocks = nn.Sequential(*[
            CaiTBlock(embed_dim, num_heads, head_dim, mlp_hidden, layer_scale_init(i + 1), dpr[i],
                      mask(num_heads=num_heads, grid_size=grid, num_prefix_tokens=0) if mask else None)
            for i in range(depth)])
        self.cls_blocks = nn.ModuleList(
            CaiTBlock(embed_dim, num_heads, head_dim, mlp_hidden, layer_scale_init(i + 1), dpr[depth + i])
            for i in range(cls_depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        init_authors_(self)
        init_patch_conv_as_linear_(self.patch_embed.proj)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch_embed(x) + self.pos_embed)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for blk in self.cls_blocks:
            cls = blk(cls, context=x)
        return self.norm(cls[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
