"""Multi-head self-attention with an ``AttentionMask`` on its scores.

The one attention layer every architecture uses for masked attention. It
follows timm's ``Attention`` (fused qkv linear, output projection) so that it
drops into timm blocks through their ``attn_layer`` argument, and adds the
mask between ``QK^T * scale`` and the softmax.

Paths: with no mask, or an additive mask, the scores never need to be
materialised and ``F.scaled_dot_product_attention`` runs (the additive mask
becomes its float ``attn_mask``). The paper's multiplicative mask needs the
explicit scores (or FlexAttention's ``score_mod`` on a GPU, see
``gmmvit.nn.kernels``). A mask placed after the softmax (``mask.placement=post``,
see ``gmmvit.nn.masks``) always runs the explicit path: neither SDPA nor flex can
renormalise their softmax's output.

Which of them may run is the layer's ``attention`` setting (``auto``, ``explicit``, ``flex``: the
run's ``cfg.attention``), set once for a whole model by ``use_attention`` after it is built, as
timm reads ``use_fused_attn()`` once per layer.

``observer`` (None unless ``gmmvit.nn.locality`` attaches one) sees every attention map the
explicit path computes, after the mask and before dropout.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gmmvit.nn import kernels
from gmmvit.nn.masks import AttentionMask, NoMask


class MaskedAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, head_dim: Optional[int] = None,
                 qkv_bias: bool = False, proj_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, mask: Optional[AttentionMask] = None,
                 project_out: bool = True, **_timm_kwargs):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        if self.head_dim < 1:
            raise ValueError(f"{num_heads} heads over a width of {dim} leave each head no dimension")
        inner = self.num_heads * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        # the authors skip the output projection when one head spans the whole dim (T2T's token transformer)
        self.proj = nn.Linear(inner, dim, bias=proj_bias) if project_out else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)
        self.mask = mask if mask is not None else NoMask()
        self.inner_dim = inner
        self.attention = "auto"
        self.flex_failed: set = set()  # (q shape, dtype) whose flex kernel did not build (eager CUDA only)
        # called with every attention map the explicit path computes; None (always, in training) costs one test
        self.observer = None

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = self.attend(q, k, v, attn_mask)
        out = out.transpose(1, 2).reshape(B, N, self.inner_dim)
        return self.proj_drop(self.proj(out))

    def attend(self, q, k, v, extra_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """softmax(mask(q k^T * scale) + extra_bias) v for q, k, v of shape [B, H, N, d]
        (placement ``post``: the mask renormalises the softmax's output instead, ``gmmvit.nn.masks``)."""
        drop = self.attn_drop if self.training else 0.0
        mask = self.mask
        fused = mask.kind == "none" or (mask.combine == "add" and mask.placement == "pre")
        if fused and self.attention != "explicit":
            bias = None if mask.kind == "none" else mask.full().to(q.dtype)
            if extra_bias is not None:
                bias = extra_bias if bias is None else bias + extra_bias
            kernels.note_path(self, "sdpa")
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        if kernels.use_flex(q, mask, drop, self.attention) and self._flex_builds(q):
            try:  # CUDA: one fused FlexAttention kernel (gmmvit.nn.kernels)
                out = kernels.flex_masked_attention(q, k, v, mask.full(), self.scale, extra_bias)
                kernels.note_path(self, "flex")
                return out
            except Exception as exc:  # noqa: BLE001 - a kernel that does not build: explicit path for that shape
                if torch.compiler.is_compiling() or not q.is_cuda:
                    raise
                self.flex_failed.add((tuple(q.shape), q.dtype))
                warnings.warn(f"FlexAttention failed for q {tuple(q.shape)} {q.dtype} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                              "using the explicit path for this shape")
        kernels.note_path(self, "explicit")
        scores = mask(q @ k.transpose(-2, -1), self.scale)
        if extra_bias is not None:
            scores = scores + extra_bias
        attn = mask.after_softmax(scores.softmax(dim=-1))
        if self.observer is not None:  # the locality analysis (gmmvit.nn.locality)
            self.observer(attn)
        if drop:
            attn = F.dropout(attn, drop)
        return attn @ v

    def _flex_builds(self, q: torch.Tensor) -> bool:
        return torch.compiler.is_compiling() or (tuple(q.shape), q.dtype) not in self.flex_failed


def use_attention(model: nn.Module, mode: Optional[str]) -> nn.Module:
    """Set every masked attention layer of ``model`` to the path ``mode`` (``cfg.attention``)."""
    mode = kernels.check_attention(mode)
    for module in model.modules():
        if isinstance(module, MaskedAttention):
            module.attention = mode
    return model
