"""The attention kernels: which path a masked attention layer takes, and FlexAttention for the
paper's multiplicative mask.

``MaskedAttention.attend`` has three paths, all computing
``softmax(mask(q k^T * scale) + extra_bias) v``:

* no mask, or an additive mask (``combine=add``): ``F.scaled_dot_product_attention``
  with the mask as its float ``attn_mask`` (fused kernels on CPU and GPU);
* the multiplicative mask (``combine=mul``, the authors' code) on CUDA:
  FlexAttention (``torch.nn.attention.flex_attention``) with the ``score_mod``
  ``score * M[h, q, kv] (+ bias[b, h, q, kv])`` - one fused kernel, the scores
  never reach memory. Flex receives the already-scaled score (``scale=`` is
  passed explicitly, so T2T's custom scaling stays exact);
* otherwise the explicit path: scores materialised, masked, softmaxed; this
  includes every mask placed after the softmax (``mask.placement=post``).

The choice is ``use_flex(q, mask, dropout, mode)``. The mode (``cfg.attention``) is a setting of
each layer, given when the model is built (``gmmvit.nn.attention.use_attention``), never a global
read per forward:

* ``auto`` (default): flex on CUDA only, for sequences of at least
  ``FLEX_MIN_TOKENS`` tokens (Swin's 16-token windows would be padded to
  flex's 128-wide tiles; the explicit path is cheaper there);
* ``explicit``: no fused kernel at all, neither flex nor SDPA, for any mask: the
  reference path, and the authors' way (their unmasked attention is explicit too);
* ``flex``: always flex where the mask is multiplicative (on CPU flex runs
  its unfused reference implementation, forward only: torch refuses CPU
  backward - use it for checks, not training).

On CUDA, flex outside ``torch.compile`` goes through one module-level
``torch.compile(flex_attention)`` (the documented way to get the fused
kernel); inside a compiled model it is traced in place.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch

from gmmvit.errors import ConfigError

try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention
except ImportError:  # pragma: no cover - older torch
    _flex_attention = None

ATTENTION_MODES = ("auto", "explicit", "flex")
FLEX_MIN_TOKENS = 32
# Flex's default backward tiles for head dim 64 on 256-token sequences need more shared memory
# than an H100 has (torch 2.11, bf16: "No valid triton configs ... out of resource"): smaller tiles
# for those shapes. Keys as in torch's kernel_options (BLOCK_M1..N2 = backward tiles).
FLEX_SMALL_TILES = {"BLOCK_M1": 32, "BLOCK_N1": 32, "BLOCK_M2": 32, "BLOCK_N2": 32}


def check_attention(mode: Optional[str]) -> str:
    """``cfg.attention`` as a mode of ``ATTENTION_MODES`` (None: auto)."""
    mode = str(mode or "auto")
    if mode not in ATTENTION_MODES:
        raise ConfigError(f"attention must be one of {ATTENTION_MODES}, got {mode!r}")
    return mode


def flex_available() -> bool:
    return _flex_attention is not None


def use_flex(q: torch.Tensor, mask, dropout: float = 0.0, mode: str = "auto") -> bool:
    """True when ``attend`` should run the multiplicative mask through FlexAttention."""
    if _flex_attention is None or mode == "explicit" or dropout:
        return False
    if getattr(mask, "kind", "none") == "none" or getattr(mask, "combine", "mul") != "mul":
        return False  # SDPA already fuses these
    if getattr(mask, "placement", "pre") != "pre":
        return False  # flex's score_mod acts before its softmax: post placement is explicit
    if mode == "flex":
        return True
    return q.is_cuda and q.shape[-2] >= FLEX_MIN_TOKENS


def note_path(layer: torch.nn.Module, path: str) -> None:
    """An attention layer notes the path it took ("sdpa", "flex", "explicit") in its own
    ``paths_taken``, in eager forwards only (a traced write would guard on the set and recompile)."""
    if not torch.compiler.is_compiling():
        layer.__dict__.setdefault("paths_taken", set()).add(path)


def paths_taken(model: torch.nn.Module, forget: bool = True) -> set:
    """The paths the model's attention layers took since they were last asked (eager forwards)."""
    seen: set = set()
    for module in model.modules():
        taken = module.__dict__.get("paths_taken")
        if taken:
            seen |= taken
            if forget:
                taken.clear()
    return seen


# One kernel is compiled per attention shape (batch, heads, tokens, head dim): a model such as T2T
# has several, times the train, last and eval batch sizes. Dynamo's default limit of 8 would send
# the rest to the unfused eager path, many times slower; ``gmmvit.run.compiling`` raises the
# process-wide limit to this (the one place dynamo's settings change).
FLEX_RECOMPILE_LIMIT = 64


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    return torch.compile(_flex_attention, dynamic=False)


def _flex_fn(q: torch.Tensor):
    if torch.compiler.is_compiling() or not q.is_cuda:
        return _flex_attention
    return _compiled_flex()


def _bias_indexer(extra_bias: torch.Tensor, lead: tuple, heads: int):
    """A 4-d view of ``extra_bias`` and a function (b, h) -> its (batch, head) index, where ``b``
    is flex's flattened index over ``lead`` and the bias broadcasts over some of those dims."""
    bias = extra_bias
    ndim = len(lead) + 3
    if bias.dim() > ndim:
        raise ValueError(f"extra_bias has {bias.dim()} dims, scores have {ndim}")
    bias = bias.reshape((1,) * (ndim - bias.dim()) + tuple(bias.shape))
    blead = bias.shape[:-3]
    hb = bias.shape[-3]
    flat = bias.reshape(math.prod(blead), hb, *bias.shape[-2:])
    # (size of lead dim j, stride of flat b over dim j, stride in the bias' flattened lead) per broadcast dim
    terms = []
    b_stride, bias_stride = 1, 1
    for j in reversed(range(len(lead))):
        if blead[j] != 1:
            if blead[j] != lead[j]:
                raise ValueError(f"extra_bias shape {tuple(extra_bias.shape)} does not broadcast to {lead}")
            terms.append((lead[j], b_stride, bias_stride))
        b_stride *= lead[j]
        bias_stride *= blead[j]

    def index(b, h):
        bi = 0
        for size, bs, ss in terms:
            bi = bi + ((b // bs) % size) * ss
        return bi, (h if hb > 1 else 0)

    if hb not in (1, heads):
        raise ValueError(f"extra_bias has {hb} heads, scores have {heads}")
    return flat, index


def flex_kernel_options(q: torch.Tensor) -> Optional[dict]:
    """Tile sizes for flex on CUDA (None: torch's defaults)."""
    if q.is_cuda and q.shape[-1] >= 64 and q.shape[-2] >= 128:
        return dict(FLEX_SMALL_TILES)
    return None


def flex_masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: torch.Tensor,
                          scale: float, extra_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``softmax((q k^T * scale) * m[h] + extra_bias) v`` through FlexAttention.

    q, k, v: ``[..., H, N, d]`` (leading dims are flattened into flex's batch, e.g. Swin's
    (batch, window)); ``m``: ``[H or 1, N, N]`` (``AttentionMask.full()``); ``extra_bias``:
    broadcastable to ``[..., H, N, N]`` (Swin's relative-position bias and shift mask).
    Gradients flow to q, k, v, ``m`` (hence sigma, alpha) and ``extra_bias``.
    """
    *lead, H, N, d = q.shape
    lead = tuple(lead)
    B = math.prod(lead) if lead else 1
    q4, k4, v4 = (t.reshape(B, H, N, t.shape[-1]) for t in (q, k, v))
    if m.shape[0] not in (1, H):
        raise ValueError(f"mask has {m.shape[0]} heads, scores have {H}")
    shared = m.shape[0] == 1

    if extra_bias is None:
        def score_mod(score, b, h, qi, ki):
            return score * m[0 if shared else h, qi, ki]
    else:
        bias, index = _bias_indexer(extra_bias, lead, H)

        def score_mod(score, b, h, qi, ki):
            bi, hi = index(b, h)
            return score * m[0 if shared else h, qi, ki] + bias[bi, hi, qi, ki]

    # the same keyword set on every call (None or a dict), so the compiled wrapper's guards stay simple
    out = _flex_fn(q4)(q4, k4, v4, score_mod=score_mod, scale=scale, kernel_options=flex_kernel_options(q4))
    return out.reshape(*lead, H, N, v.shape[-1])


def explicit_masked_attention(q, k, v, m, scale, extra_bias=None) -> torch.Tensor:
    """The reference: the explicit path of ``MaskedAttention.attend`` for a ``mul`` mask."""
    scores = (q @ k.transpose(-2, -1)) * (m * scale).to(q.dtype)
    if extra_bias is not None:
        scores = scores + extra_bias
    return scores.softmax(dim=-1) @ v


__all__ = ["ATTENTION_MODES", "FLEX_MIN_TOKENS", "FLEX_RECOMPILE_LIMIT", "check_attention", "flex_available",
           "use_flex", "flex_masked_attention", "explicit_masked_attention", "note_path", "paths_taken"]
