"""Masks on the attention scores: the paper's subject, in one place.

Every architecture builds its masks through the same factory call,
``mask_factory(num_heads=H, grid_size=g, num_prefix_tokens=p)``, and every
attention layer applies them through two calls around its softmax:
``AttentionMask.forward(scores, scale)`` before it and
``AttentionMask.after_softmax(attn)`` after it. The factory is the
partially-instantiated class from ``conf/mask/*.yaml``.

Placement (``mask.placement``), with S the scaled scores (plus any bias the
architecture adds, e.g. Swin's relative position bias) and M the mask:

* ``pre`` (default, the authors' code): A = softmax(S * M) (``combine=mul``)
  or softmax(S + M) (``combine=add``); ``after_softmax`` is the identity.
* ``post``: P = softmax(S), then every row renormalised,
  A[i, j] = P[i, j] M[i, j] / (r_i + eps * sgn(r_i)), r_i = sum_j P[i, j] M[i, j],
  eps = 1e-6 and sgn(0) = 1 (the guard only keeps a row whose masked mass
  cancels to zero finite; it keeps the row's sign). Rows sum to one. Only
  ``combine=mul`` has a post form, and ELM's zero init would make every row
  0/0, so ELM refuses ``post``. Fused kernels cannot renormalise after their
  softmax: ``post`` always runs the explicit path (``gmmvit.nn.attention``).

A mask spans the ``g x g`` token grid; prefix tokens (a class token placed
before the grid, as in PiT) keep their scores untouched: their rows and
columns are padded with the identity of the combination (1 for ``mul``,
0 for ``add``).
"""

from __future__ import annotations

import torch
from torch import nn

from gmmvit.errors import ConfigError

COMBINATIONS = ("mul", "add")
PLACEMENTS = ("pre", "post")
POST_SOFTMAX_EPS = 1e-6

# exp(-d2) is 0 in float32 once d2 >= 104 (below the smallest subnormal). The
# authors compute the base map as exp(-d2) ** 0.5 in float32, so on grids
# larger than 8x8 (max d2 = 98) their Gaussians vanish beyond that radius
# whatever sigma is. We reproduce that cut-off unless ``exact_tails`` is set.
FLOAT32_EXP_UNDERFLOW_D2 = 104.0


def squared_distance_grid(grid_size: int) -> torch.Tensor:
    """d2[i, j] = dx^2 + dy^2 between tokens i, j of a row-major g x g grid."""
    ys, xs = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()
    return torch.cdist(coords, coords, p=2.0).pow(2).round()


class AttentionMask(nn.Module):
    """Base class: ``forward(scores, scale)`` returns the masked ``scores * scale``.

    Subclasses implement ``values()``: the ``[H or 1, N, N]`` mask over the
    grid tokens. It is computed once per call, however many heads, windows or
    images the scores hold.
    """

    kind = "base"

    def __init__(self, num_heads: int, grid_size: int, num_prefix_tokens: int = 0,
                 combine: str = "mul", placement: str = "pre"):
        super().__init__()
        if combine not in COMBINATIONS:
            raise ConfigError(f"mask.combine must be one of {COMBINATIONS}, got {combine!r}")
        if placement not in PLACEMENTS:
            raise ConfigError(f"mask.placement must be one of {PLACEMENTS}, got {placement!r}")
        if placement == "post" and combine != "mul":
            raise ConfigError("mask.placement=post multiplies the softmax output by the mask: "
                              "set mask.combine=mul (or mask.placement=pre)")
        self.num_heads = num_heads
        self.grid_size = grid_size
        self.num_prefix_tokens = num_prefix_tokens
        self.combine = combine
        self.placement = placement

    @property
    def num_tokens(self) -> int:
        return self.grid_size ** 2 + self.num_prefix_tokens

    def values(self) -> torch.Tensor:
        raise NotImplementedError

    def full(self) -> torch.Tensor:
        """The mask over all tokens, prefix rows/columns set to the identity."""
        m = self.values()
        p = self.num_prefix_tokens
        if p == 0:
            return m
        identity = 1.0 if self.combine == "mul" else 0.0
        return nn.functional.pad(m, (p, 0, p, 0), value=identity)

    def forward(self, scores: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The masked ``scores * scale`` (placement ``pre``; ``post`` only scales). For ``mul`` the
        scale goes into the small ``[H, N, N]`` mask rather than into the scores: one pass fewer
        over the largest tensor of attention."""
        if self.placement == "post":
            return scores * scale
        m = self.full()
        if self.combine == "mul":
            return scores * (m * scale).to(scores.dtype)
        return scores * scale + m.to(scores.dtype)

    def after_softmax(self, attn: torch.Tensor) -> torch.Tensor:
        """Placement ``post``: ``attn * M`` renormalised per row (module docstring); ``pre``: ``attn``."""
        if self.placement != "post":
            return attn
        masked = attn.float() * self.full().float()
        row = masked.sum(dim=-1, keepdim=True)
        guard = torch.where(row < 0, -POST_SOFTMAX_EPS, POST_SOFTMAX_EPS)
        return (masked / (row + guard)).to(attn.dtype)

    def extra_repr(self) -> str:
        return (f"heads={self.num_heads}, grid={self.grid_size}x{self.grid_size}, "
                f"prefix={self.num_prefix_tokens}, combine={self.combine}, placement={self.placement}")


class NoMask(AttentionMask):
    """Plain attention: scores pass through unchanged."""

    kind = "none"

    def __init__(self, num_heads: int = 1, grid_size: int = 1, num_prefix_tokens: int = 0,
                 combine: str = "mul", placement: str = "pre"):
        # Plain attention ignores both settings: accepted, each value would train the same network
        # again under another run folder and table row.
        if combine != "mul":
            raise ConfigError(f"mask.combine={combine}: mask=none has no mask to combine with the scores, so "
                              "this run would train plain attention again under another name; give "
                              f"mask.combine only to masked jobs (-m mask=gmm,elm mask.combine={combine})")
        if placement != "pre":
            raise ConfigError(f"mask.placement={placement}: mask=none has no mask to place, so this run would "
                              "train plain attention again under another name; give mask.placement only to "
                              f"GMM jobs (-m mask=gmm mask.placement={placement})")
        super().__init__(num_heads, grid_size, num_prefix_tokens, combine, placement)

    def forward(self, scores: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return scores * scale if scale != 1.0 else scores

    def after_softmax(self, attn: torch.Tensor) -> torch.Tensor:
        return attn


class ElementwiseLearnableMask(AttentionMask):
    """ELM: one N x N weight per layer, shared by all heads.

    Initialised to zeros, as in the authors' code: with ``mul`` attention
    starts uniform. With ``add`` zeros are the neutral start as well.
    """

    kind = "elm"

    def __init__(self, num_heads: int, grid_size: int, num_prefix_tokens: int = 0,
                 combine: str = "mul", placement: str = "pre"):
        if placement == "post":
            raise ConfigError("mask=elm starts at zeros, so after the softmax every row would be 0/0: "
                              "use mask.placement=pre with ELM (post is for mask=gmm)")
        super().__init__(num_heads, grid_size, num_prefix_tokens, combine, placement)
        n = grid_size ** 2
        self.weight = nn.Parameter(torch.zeros(1, n, n))

    def values(self) -> torch.Tensor:
        return self.weight


class GaussianMixtureMask(AttentionMask):
    """GMM: per head, a mixture of K isotropic Gaussians of token distance.

    M[h] = sum_k alpha[k,h] * exp(-d2 / (2 (sigma[k,h]^2 + 1e-5))), with
    sigma ~ N(10, 10^2) and alpha ~ N(0, 2^2) at init: 2*K*H parameters.
    """

    kind = "gmm"

    def __init__(self, num_heads: int, grid_size: int, num_prefix_tokens: int = 0,
                 combine: str = "mul", num_kernels: int = 5, sigma_init: tuple = (10.0, 10.0),
                 alpha_init_std: float = 2.0, exact_tails: bool = False, placement: str = "pre"):
        super().__init__(num_heads, grid_size, num_prefix_tokens, combine, placement)
        self.num_kernels = num_kernels
        self.sigma = nn.Parameter(torch.randn(num_kernels, num_heads, 1, 1) * sigma_init[1] + sigma_init[0])
        self.alpha = nn.Parameter(torch.randn(num_kernels, num_heads, 1, 1) * alpha_init_std)
        d2 = squared_distance_grid(grid_size)
        support = torch.ones_like(d2) if exact_tails else (d2 < FLOAT32_EXP_UNDERFLOW_D2).float()
        self.register_buffer("neg_half_d2", -0.5 * d2, persistent=False)
        self.register_buffer("support", support, persistent=False)
        self.exact_tails = exact_tails

    def values(self) -> torch.Tensor:
        inv_var = 1.0 / (self.sigma.float() ** 2 + 1e-5)            # [K, H, 1, 1]
        kernels = torch.exp(self.neg_half_d2 * inv_var)              # [K, H, N, N]
        return (self.alpha.float() * kernels).sum(0) * self.support  # [H, N, N]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", kernels={self.num_kernels}, exact_tails={self.exact_tails}"


def is_masked(mask_factory) -> bool:
    """True when the factory builds a real mask (ELM/GMM), False for ``none``."""
    if mask_factory is None:
        return False
    cls = getattr(mask_factory, "func", mask_factory)
    return getattr(cls, "kind", "none") != "none"


def gaussian_reference(grid_size: int, sigma: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The authors' formula computed literally in float32 (for tests and checks)."""
    d2 = squared_distance_grid(grid_size)
    base = torch.exp(-d2) ** 0.5
    return torch.sum(alpha * base ** (1 / (sigma ** 2 + 1e-5)), 0)


__all__ = [
    "AttentionMask", "NoMask", "ElementwiseLearnableMask", "GaussianMixtureMask",
    "is_masked", "squared_distance_grid", "gaussian_reference",
]
