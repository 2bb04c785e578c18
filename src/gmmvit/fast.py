"""Fast paths for masked attention: FlexAttention for the paper's multiplicative mask.

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

The choice is ``use_flex(q, mask, dropout)``, driven by one module-level mode
set from ``cfg.attention`` (``set_attention``):

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

import contextlib
import functools
import math
import warnings
from typing import Optional

import torch

from gmmvit.models.common import ConfigError

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
_mode = "auto"
_FLEX_FAILED: set = set()  # (q shape, dtype, device) whose flex kernel did not build (eager CUDA only)
_paths_seen: Optional[set] = None  # set by ``recording_paths``: the attention paths the layers took


def set_attention(mode: Optional[str]) -> None:
    """Select the attention path for every MaskedAttention (``cfg.attention``)."""
    global _mode
    mode = str(mode or "auto")
    if mode not in ATTENTION_MODES:
        raise ConfigError(f"attention must be one of {ATTENTION_MODES}, got {mode!r}")
    _mode = mode


def attention_mode() -> str:
    return _mode


def flex_available() -> bool:
    return _flex_attention is not None


def use_flex(q: torch.Tensor, mask, dropout: float = 0.0) -> bool:
    """True when ``attend`` should run the multiplicative mask through FlexAttention."""
    if _flex_attention is None or _mode == "explicit" or dropout:
        return False
    if getattr(mask, "kind", "none") == "none" or getattr(mask, "combine", "mul") != "mul":
        return False  # SDPA already fuses these
    if getattr(mask, "placement", "pre") != "pre":
        return False  # flex's score_mod acts before its softmax: post placement is explicit
    if _mode == "flex":
        return True
    return q.is_cuda and q.shape[-2] >= FLEX_MIN_TOKENS


def note_path(path: str) -> None:
    """Called by the attention layers with the path they take ("sdpa", "flex", "explicit")."""
    # is_compiling first: a traced read of the global would guard on it and recompile when it changes
    if not torch.compiler.is_compiling() and _paths_seen is not None:
        _paths_seen.add(path)


@contextlib.contextmanager
def recording_paths():
    """Collects the attention paths taken by eager forwards inside the block (a set)."""
    global _paths_seen
    _paths_seen = seen = set()
    try:
        yield seen
    finally:
        _paths_seen = None


# One kernel is compiled per attention shape (batch, heads, tokens, head dim): a model such as T2T
# has several, times the train, last and eval batch sizes. Dynamo's default limit of 8 would send
# the rest to the unfused eager path, many times slower.
FLEX_RECOMPILE_LIMIT = 64


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, FLEX_RECOMPILE_LIMIT)
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

    key = (tuple(q4.shape), q4.dtype, q4.device.type)
    if key in _FLEX_FAILED:
        note_path("explicit")
        return explicit_masked_attention(q, k, v, m, scale, extra_bias)
    try:
        # the same keyword set on every call (None or a dict), so the compiled wrapper's guards stay simple
        out = _flex_fn(q4)(q4, k4, v4, score_mod=score_mod, scale=scale,
                           kernel_options=flex_kernel_options(q4))
    except Exception as exc:  # noqa: BLE001 - a kernel that does not build: explicit path for that shape
        if torch.compiler.is_compiling() or not q.is_cuda:
            raise
        _FLEX_FAILED.add(key)
        note_path("explicit")
        warnings.warn(f"FlexAttention failed for q {tuple(q4.shape)} {q4.dtype} "
                      f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                      "using the explicit path for this shape")
        return explicit_masked_attention(q, k, v, m, scale, extra_bias)
    note_path("flex")
    return out.reshape(*lead, H, N, v.shape[-1])


def explicit_masked_attention(q, k, v, m, scale, extra_bias=None) -> torch.Tensor:
    """The reference: the explicit path of ``MaskedAttention.attend`` for a ``mul`` mask."""
    scores = (q @ k.transpose(-2, -1)) * (m * scale).to(q.dtype)
    if extra_bias is not None:
        scores = scores + extra_bias
    return scores.softmax(dim=-1) @ v


# --- torch.compile of the training step ---------------------------------------------------------

# torch.compile's own modes; reduce-overhead replays the step as CUDA graphs, which removes the
# per-kernel launch cost that dominates these small models on a GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_setting(setting, device: torch.device) -> Optional[str]:
    """``cfg.compile`` -> the torch.compile mode to use, or None for eager.

    ``auto``: ``default`` on CUDA, eager on CPU (compiling costs minutes on a small CPU);
    ``true``/``false``; or one of ``COMPILE_MODES``.
    """
    text = "auto" if setting is None else str(setting).lower()
    if text == "auto":
        return "default" if torch.device(device).type == "cuda" else None
    if text in ("true", "false"):
        return "default" if text == "true" else None
    if text not in COMPILE_MODES:
        raise ConfigError(f"compile must be auto, true, false or one of {COMPILE_MODES}, got {setting!r}")
    return text


def compile_model(model: torch.nn.Module, setting, device: torch.device) -> torch.nn.Module:
    """The model as the training step calls it: compiled per ``cfg.compile`` (see ``compile_setting``).

    With ``auto``, a graph that fails to compile runs eagerly with a warning (dynamo's
    ``suppress_errors``) instead of ending the run: compiling is an optimisation there, not a choice
    the user made.
    """
    import torch._dynamo.config as dynamo_config

    global _frames_before
    mode = compile_setting(setting, device)
    if mode is None:
        return model
    # a sweep on Hydra's basic launcher trains run after run in one process: without a reset, the
    # runs' graphs pile up on the same code objects until dynamo's recompile limit sends later runs
    # to eager
    torch.compiler.reset()
    dynamo_config.suppress_errors = setting is None or str(setting).lower() == "auto"
    _frames_before = _frame_counts()
    return torch.compile(model, mode=None if mode == "default" else mode)


_frames_before: dict = {}


def _frame_counts() -> dict:
    from torch._dynamo.utils import counters

    return {"total": counters["frames"]["total"], "ok": counters["frames"]["ok"],
            "graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values())}


def compile_report(setting, device: torch.device) -> dict:
    """What ``compile_model`` actually gave since it was called: a silent fallback to eager (``auto``
    suppresses compile errors) shows as ``eager (compile failed)`` or ``partly compiled``."""
    mode = compile_setting(setting, device)
    if mode is None:
        return {"compiled": "eager"}
    now = _frame_counts()
    delta = {k: now[k] - _frames_before.get(k, 0) for k in now}
    failed = delta["total"] - delta["ok"]
    state = ("eager (compile failed)" if delta["graphs"] == 0 else "partly compiled" if failed else "compiled")
    return {"compiled": state, "compile_mode": mode, "graphs": delta["graphs"],
            "graph_breaks": delta["breaks"], "failed_frames": failed}


__all__ = ["ATTENTION_MODES", "FLEX_MIN_TOKENS", "set_attention", "attention_mode", "flex_available",
           "use_flex", "flex_masked_attention", "explicit_masked_attention",
           "note_path", "recording_paths", "COMPILE_MODES", "compile_setting", "compile_model",
           "compile_report"]
