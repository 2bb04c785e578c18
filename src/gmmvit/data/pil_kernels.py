"""PIL's image operations on uint8 tensors ``[..., C, H, W]``, where torchvision's tensor ops differ
from PIL's (which the authors' augmentation calls). Each function names the PIL call it follows and
how close it is; ``gmmvit.data.authors_ops`` uses them for the batched path.

The geometric ones (``affine_nearest``, ``shear_bicubic``) precompute, per (transform, size, device),
where each output pixel reads: one gather per call (nearest), or one small matrix product per image
row or column (bicubic shear: its 4 samples on that line, as a matrix), so a call costs what torchvision's does.
"""

from __future__ import annotations

import math

import torch

GREY = 128                      # the authors' fillcolor=(128, 128, 128) (autoaug.py, transforms.py)


def as_uint8(v: torch.Tensor) -> torch.Tensor:
    """PIL's 8-bit store of a float: 0 at or below 0, 255 at or above 255, else truncated."""
    return v.clamp(0, 255).to(torch.uint8)


# --- geometry ------------------------------------------------------------------------------------

_NEAREST: dict = {}
_SHEAR: dict = {}


def _fix(v: float) -> int:
    return math.floor(v * 65536.0 + 0.5)


def affine_nearest(x: torch.Tensor, matrix: tuple, fill: int = GREY) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, matrix, NEAREST, fillcolor=fill)`` on uint8 [..., H, W], exact.

    ``matrix`` maps an output pixel's centre (x + 0.5, y + 0.5) to its source point, as PIL's; the
    source pixel is PIL's 16.16 fixed point (``affine_fixed`` in Geometry.c):
    ``(FIX(a2 + a0/2 + a1/2) + x FIX(a0) + y FIX(a1)) >> 16``.
    """
    *lead, h, w = x.shape
    key = (tuple(float(v) for v in matrix), h, w, x.device)
    if key not in _NEAREST:
        a = key[0]
        a0, a1, a3, a4 = _fix(a[0]), _fix(a[1]), _fix(a[3]), _fix(a[4])
        a2, a5 = _fix(a[2] + a[0] * 0.5 + a[1] * 0.5), _fix(a[5] + a[3] * 0.5 + a[4] * 0.5)
        yi = torch.arange(h, dtype=torch.int64)[:, None]
        xi = torch.arange(w, dtype=torch.int64)[None, :]
        sx = (a2 + yi * a1 + xi * a0) >> 16
        sy = (a5 + yi * a4 + xi * a3) >> 16
        outside = ~((sx >= 0) & (sx < w) & (sy >= 0) & (sy < h))
        idx = sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)
        _NEAREST[key] = (idx.reshape(-1).to(x.device), outside.reshape(-1).to(x.device))
    idx, outside = _NEAREST[key]
    flat = x.reshape(-1, h * w)
    out = flat.gather(1, idx.expand_as(flat))
    return out.masked_fill_(outside, fill).reshape(*lead, h, w)


def _cubic_weights(d: torch.Tensor) -> list[torch.Tensor]:
    """PIL's bicubic (a = -1) as weights of its 4 samples at fraction ``d``: its BICUBIC macro
    ``v2 + d (p2 + d (p3 + d p4))`` with p2 = v3 - v1, p3 = 2 (v1 - v2) + v3 - v4, p4 = v2 - v1 - v3 + v4."""
    d2, d3 = d * d, d * d * d
    return [-d + 2 * d2 - d3, 1 - 2 * d2 + d3, d + d2 - d3, -d2 + d3]


def _shear_tables(m: float, x_axis: bool, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For PIL's ``transform(AFFINE, (1, m, 0, 0, 1, 0) | (1, 0, 0, m, 1, 0), BICUBIC)`` of an [H, W]
    image: per line (a row for a shear along x, a column along y) the float32 matrix
    ``A[line, source, output]`` of PIL's weights, and the fill ``[H, W]`` (grey where the source
    point lies outside the image, else 0).

    The source point of output (x, y) is (x + 0.5 + m (y + 0.5), y + 0.5) for a shear along x,
    computed in double as PIL's ``affine_transform``: it lies on the output's own row, so PIL's
    4 x 4 bicubic reduces to 4 samples of that row (the other fraction is 0 and its pass returns
    that row's sample exactly), clamped at the border. Along y, the same on the column."""
    yf = torch.arange(h, dtype=torch.float64)[:, None] + 0.5
    xf = torch.arange(w, dtype=torch.float64)[None, :] + 0.5
    s = (1.0 * xf + m * yf + 0.0) if x_axis else (m * xf + 1.0 * yf + 0.0)
    s, size = (s, w) if x_axis else (s.t(), h)             # [line, output position along it]
    inside = (s >= 0) & (s < size)
    first = (s - 0.5).floor()
    weights = _cubic_weights(s - 0.5 - first)
    first = first.long() - 1
    lines, n = s.shape
    a = torch.zeros(lines, size, size, dtype=torch.float64)
    line = torch.arange(lines)[:, None].expand(lines, n)
    out = torch.arange(n)[None, :].expand(lines, n)
    for k, wk in enumerate(weights):
        a.index_put_((line, (first + k).clamp(0, size - 1), out), torch.where(inside, wk, 0.0), accumulate=True)
    fill = torch.where(inside, 0.0, float(GREY))
    return a.float().to(device), (fill if x_axis else fill.t()).float().to(device)


def shear_bicubic(x: torch.Tensor, m: float, x_axis: bool) -> torch.Tensor:
    """PIL's ``transform(AFFINE, (1, m, 0, 0, 1, 0) | (1, 0, 0, m, 1, 0), BICUBIC, fillcolor=grey)``
    (the authors' ShearX / ShearY) on uint8 [..., H, W], within one level of PIL's.

    PIL computes in double and truncates; here the weights are float32 (precomputed per magnitude
    and size) and each line is one matrix product, so a value within float error of an integer can
    land one level from PIL's (0.07% of pixels of noise images); a zero fraction is exact."""
    *lead, h, w = x.shape
    key = (float(m), bool(x_axis), h, w, x.device)
    if key not in _SHEAR:
        _SHEAR[key] = _shear_tables(float(m), bool(x_axis), h, w, x.device)
    a, fill = _SHEAR[key]
    images = x.reshape(-1, h, w).float()
    if x_axis:
        out = torch.bmm(images.transpose(0, 1), a).transpose(0, 1)   # [H, N, W] x [H, W, W]
    else:
        out = torch.bmm(images.permute(2, 0, 1), a).permute(1, 2, 0)  # [W, N, H] x [W, H, H]
    return as_uint8(out.add_(fill).floor_()).reshape(*lead, h, w)


def rotate_matrix(angle: float, w: int, h: int) -> list[float]:
    """PIL's ``Image.rotate(angle)`` matrix (centre (w/2, h/2), no expand), as Image.rotate builds it."""
    t = -math.radians(angle % 360.0)
    m = [round(math.cos(t), 15), round(math.sin(t), 15), 0.0, round(-math.sin(t), 15), round(math.cos(t), 15), 0.0]
    cx, cy = w / 2, h / 2
    m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx
    m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy
    return m


# --- colour --------------------------------------------------------------------------------------

def grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")`` of uint8 RGB [..., 3, H, W]: (19595 R + 38470 G + 7471 B + 2^15) >> 16, exact."""
    if x.shape[-3] == 1:
        return x
    xi = x.to(torch.int32)
    out = (xi[..., 0, :, :] * 19595 + xi[..., 1, :, :] * 38470 + xi[..., 2, :, :] * 7471 + 32768) >> 16
    return out.to(torch.uint8).unsqueeze(-3)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, x, factor)`` (ImageEnhance's ``enhance``): in C float,
    ``in1 + alpha * (in2 - in1)``, stored truncated; exact."""
    d = degenerate.float()
    return as_uint8(d + torch.tensor(factor, dtype=torch.float32) * (x.float() - d))


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Contrast``: a blend with int(mean of PIL's grey + 0.5), exact. (torchvision's
    adjust_contrast blends with the float mean of its own truncated grey: up to 0.5 level off.)"""
    g = grey(x).to(torch.int64)
    mean = torch.floor(g.sum(dim=(-3, -2, -1), keepdim=True).double() / g[0].numel() + 0.5)
    return blend(mean.float(), x, factor)


def color(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Color``: a blend with PIL's integer grey, exact. (torchvision's adjust_saturation
    blends with a truncated float grey 0.2989 R + 0.587 G + 0.114 B.)"""
    return blend(grey(x), x, factor)


def smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``filter(ImageFilter.SMOOTH)`` of uint8 [..., H, W]: the 3 x 3 kernel (1 1 1, 1 5 1, 1 1 1) / 13
    in C float, rows y+1, y, y-1 summed in that order, rounded half up; the border pixels kept; exact."""
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        return x
    xf = x.float()
    k1 = torch.tensor(1.0) / torch.tensor(13.0)            # PIL divides the float kernel by 13
    k5 = torch.tensor(5.0) / torch.tensor(13.0)
    p1, p5 = xf * k1, xf[..., 1:-1, 1:-1] * k5             # each product once (the same floats)

    def row(r, centre):
        return (p1[..., r, :-2] + centre) + p1[..., r, 2:]
    ss = (row(slice(2, None), p1[..., 2:, 1:-1]) + row(slice(1, -1), p5)) + row(slice(None, -2), p1[..., :-2, 1:-1])
    out = x.clone()
    out[..., 1:-1, 1:-1] = as_uint8(torch.floor(ss + 0.5))
    return out


def sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Sharpness``: blur + f (x - blur), the blur rounded half up, exact. (torchvision's
    adjust_sharpness rounds its blur half-to-even and blends as x f + blur (1 - f).)"""
    return blend(smooth(x), x, factor)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast`` per channel: PIL's LUT int(v * scale + offset) for v = 0..255 in
    double, looked up per pixel, exact. (torchvision's computes (x - lo) * scale in float32 per
    pixel: 2% of pixels one level apart.)"""
    *lead, h, w = x.shape
    lo = x.amin(dim=(-2, -1)).reshape(-1, 1).double()
    hi = x.amax(dim=(-2, -1)).reshape(-1, 1).double()
    flat = hi <= lo
    # a true division (Python's 255.0 / tensor is torch's reciprocal times 255, not bit-equal)
    scale = torch.full_like(hi, 255.0).div_(torch.where(flat, torch.ones_like(hi), hi - lo))
    offset = -lo * scale
    levels = torch.arange(256, dtype=torch.float64, device=x.device)
    lut = torch.where(flat, levels, (levels * scale + offset).floor_())      # a flat channel stays
    lut = as_uint8(lut)                                                       # [channels, 256]
    return lut.gather(1, x.reshape(-1, h * w).long()).reshape(*lead, h, w)


__all__ = ["GREY", "as_uint8", "affine_nearest", "shear_bicubic", "rotate_matrix", "grey", "blend", "contrast",
           "color", "smooth", "sharpness", "autocontrast"]
