"""Multi-head self-attention with an ``AttentionMask`` on its scores.

The one attention layer every architecture uses for masked attention. It
follows timm's ``Attention`` (fused qkv linear, output projection) so that it
drops into timm blocks through their ``attn_layer`` argument, and adds the
mask between ``QK^T * scale`` and the softmax.

Paths: with no mask, or an additive mask, the scores never need to be
materialised and ``F.scaled_dot_product_attention`` runs (the additive mask
becomes its float ``attn_mask``). The paper's multiplicative mask needs the
explicit scores (or FlexAttention's ``score_mod`` on a GPU, see
``gmmvit.fast``). A mask placed after the softmax (``mask.placement=post``,
see ``gmmvit.masks``) always runs the explicit path: neither SDPA nor flex can
renormalise their softmax's output.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gmmvit import fast
from gmmvit.masks import AttentionMask, NoMask


class MaskedAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, head_dim: Optional[int] = None,
                 qkv_bias: bool = False, proj_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, mask: Optional[AttentionMask] = None,
                 project_out: bool = True, **_timm_kwargs):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner = self.num_heads * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        # the authors skip the output projection when one head spans the whole dim (T2T's token transformer)
        self.proj = nn.Linear(inner, dim, bias=proj_bias) if project_out else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)
        self.mask = mask if mask is not None else NoMask()
        self.inner_dim = inner

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = self.attend(q, k, v, attn_mask)
        out = out.transpose(1, 2).reshape(B, N, self.inner_dim)
        return self.proj_drop(self.proj(out))

    def attend(self, q, k, v, extra_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """softmax(mask(q k^T * scale) + extra_bias) v for q, k, v of shape [B, H, N, d]
        (placement ``post``: the mask renormalises the softmax's output instead, ``gmmvit.masks``)."""
        drop = self.attn_drop if self.training else 0.0
        mask = self.mask
        fused = mask.kind == "none" or (mask.combine == "add" and mask.placement == "pre")
        if fused and fast.attention_mode() != "explicit":
            bias = None if mask.kind == "none" else mask.full().to(q.dtype)
            if extra_bias is not None:
                bias = extra_bias if bias is None else bias + extra_bias
            fast.note_path("sdpa")
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        if fast.use_flex(q, mask, drop):  # CUDA: one fused FlexAttention kernel (gmmvit.fast)
            return fast.flex_masked_attention(q, k, v, mask.full(), self.scale, extra_bias)
        fast.note_path("explicit")
        scores = mask(q @ k.transpose(-2, -1), self.scale)
        if extra_bias is not None:
            scores = scores + extra_bias
        attn = mask.after_softmax(scores.softmax(dim=-1))
        if drop:
            attn = F.dropout(attn, drop)
        return attn @ v


def masked_attention_layer(mask_factory: Optional[Callable], grid_size: int,
                           num_prefix_tokens: int = 0, head_dim: Optional[int] = None,
                           **fixed) -> Callable[..., MaskedAttention]:
    """An ``attn_layer`` for timm blocks: builds a MaskedAttention with its own mask."""

    def build(dim, num_heads=8, **kwargs):
        mask = (mask_factory(num_heads=num_heads, grid_size=grid_size,
                             num_prefix_tokens=num_prefix_tokens)
                if mask_factory is not None else None)
        kwargs = {**kwargs, **fixed}
        return MaskedAttention(dim, num_heads=num_heads, head_dim=head_dim, mask=mask, **kwargs)

    return build
