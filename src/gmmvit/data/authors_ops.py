"""The authors' AutoAugment and random erasing, per image (PIL) and batched (uint8 / float tensors).

The authors (CatworldLee/Gaussian-Mixture-Mask-Attention, ``main.py``) train with
``RandomHorizontalFlip, RandomCrop(size, padding=4), <Policy>(), ToTensor, Normalize, RandomErasing``
where the policy is their ``utils/autoaug.py`` (CIFAR10Policy for both CIFARs, SVHNPolicy for SVHN,
ImageNetPolicy otherwise: Tiny-ImageNet), its ops are ``utils/transforms.py`` (PIL) and the erasing is
``utils/random_erasing.py`` (on the normalised tensor). Their sub-policy tables equal torchvision's
``AutoAugmentPolicy`` tables (same 25 sub-policies, probabilities and magnitude levels, in order), so
the tables are torchvision's; the ops and their magnitudes differ from torchvision's:

* shear: bicubic, grey fill (torchvision: nearest, black);
* translate: ``level/9 * 150/331 * size`` pixels, fractional (torchvision: ``int(...)``), grey fill;
* rotate: always the positive (counter-clockwise) angle, grey fill (torchvision: random sign, black);
* solarize: threshold ``linspace(256, 0, 10)`` (torchvision: ``linspace(255, 0, 10)``);
* colour, contrast, sharpness, brightness, posterize, autocontrast, equalize, invert: PIL's, as
  torchvision's PIL path (the same factors ``1 +- level/9 * 0.9``, the same posterize bits);
* erasing: aspect uniform in ``[r1, 1/r1]`` (torchvision: log-uniform), 100 attempts (torchvision: 10),
  the box filled with the dataset mean (the raw mean, written into the normalised tensor, as
  torchvision's ``value=mean`` in ``data.build_transforms``).

Selector ``ops`` (``OPS``: "authors" | "torchvision"), for ``recipe.aug.ops``:

* ``per_image_autoaugment(policy, ops)``: PIL -> PIL; "authors": ``AutoAugment`` below,
  "torchvision": ``torchvision.transforms.AutoAugment`` (today's per-image transform);
* ``batch_autoaugment(policy, ops)``: ``BatchAutoAugment``, uint8 ``[B, C, H, W]`` -> uint8, one
  sub-policy per image; "torchvision" runs torchvision's v2 ops with the draws of the batched path
  before this key existed (the same images come out for the same seed);
* ``per_image_erasing(p, max_area, min_aspect, value, ops)``: normalised tensor -> tensor;
  "authors": ``RandomErasing`` below, "torchvision": ``torchvision.transforms.RandomErasing``;
* ``batch_erasing(p, max_area, min_aspect, value, ops)``: ``BatchRandomErasing``, float
  ``[B, C, H, W]`` -> float; "torchvision" draws as ``torchvision.transforms.RandomErasing``.

``policy`` is the dataset config's ``autoaugment_policy``: "cifar10" | "svhn" | "imagenet".
Random draws come from torch's generator (per-image: CPU; batched: CPU for sub-policy choices,
the tensor's device for erasing), as torchvision's transforms, so DataLoader worker seeding and
``torch.manual_seed`` govern them.

Each authors' op is, per path, either torchvision's functional op with the authors' arguments or
written in ``gmmvit.data.pil_kernels`` where torchvision's differs from PIL's (the comment at each op
says which). Every op is bit-exact to the authors' PIL op but two, within one level: the per-image
shear (torchvision's tan(atan(m)) rounding: ~1e-5 of pixels) and the batched shear (float32 weights:
~0.07% of pixels); tests/test_authors_ops.py checks every op and level against the authors' formulas.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from gmmvit.data import pil_kernels as pk
from gmmvit.data.pil_kernels import GREY

# recipe.aug.ops: whose AutoAugment ops and random erasing the recipe runs (config.schema reads this)
OPS = ("authors", "torchvision")
# the dataset config's autoaugment_policy: the authors' policy classes are torchvision's tables
AUTOAUGMENT_POLICIES = {
    "cifar10": transforms.AutoAugmentPolicy.CIFAR10,
    "svhn": transforms.AutoAugmentPolicy.SVHN,
    "imagenet": transforms.AutoAugmentPolicy.IMAGENET,
}
NUM_LEVELS = 10                 # magnitude levels 0..9 (np.linspace(..., 10) in SubPolicy.ranges)


def _check_ops(ops: str) -> str:
    if ops not in OPS:
        raise ValueError(f"recipe.aug.ops must be one of {', '.join(OPS)}, got {ops!r}")
    return ops


def policy_table(policy: str) -> list:
    """The 25 sub-policies ``((op, p, level), (op, p, level))``: torchvision's tables, which equal the
    authors' (autoaug.py ImageNetPolicy / CIFAR10Policy / SVHNPolicy) entry for entry."""
    if policy not in AUTOAUGMENT_POLICIES:
        raise ValueError(f"policy must be one of {tuple(AUTOAUGMENT_POLICIES)}, got {policy!r}")
    return transforms.AutoAugment(AUTOAUGMENT_POLICIES[policy]).policies


# --- the authors' ops ------------------------------------------------------------------------------

class Op:
    """One AutoAugment op: its 10 magnitudes (``levels(h, w)``), whether a random sign applies, and
    its image function for PIL images and for uint8 tensors ``[B, C, H, W]`` (one magnitude, signed)."""
    __slots__ = ("levels", "signed", "pil", "tensor")

    def __init__(self, levels, signed: bool, pil, tensor):
        self.levels, self.signed, self.pil, self.tensor = levels, signed, pil, tensor


def _lin(lo: float, hi: float):
    return lambda h, w: np.linspace(lo, hi, NUM_LEVELS)


_NONE = lambda h, w: np.zeros(NUM_LEVELS)   # noqa: E731  autocontrast, equalize, invert: [0] * 10
_BICUBIC, _NEAREST = InterpolationMode.BICUBIC, InterpolationMode.NEAREST


def _shear_pil(img, m: float, x_axis: bool):
    # torchvision's affine with shear atan(m), centre (0, 0), BICUBIC, fill=128: PIL's
    # transform((1, m, 0, 0, 1, 0)) as the authors', exact but for tan(atan(m)) rounding (<=1 level,
    # 15 of 2e6 pixels)
    angle = math.degrees(math.atan(m))
    return TF.affine(img, angle=0.0, translate=[0.0, 0.0], scale=1.0,
                     shear=[angle, 0.0] if x_axis else [0.0, angle],
                     interpolation=_BICUBIC, fill=GREY, center=[0.0, 0.0])


def _shear_tensor(x: torch.Tensor, m: float, x_axis: bool) -> torch.Tensor:
    # written here: torchvision's tensor affine has no bicubic (and its bilinear/nearest grid_sample
    # fills and samples differently from PIL)
    return pk.shear_bicubic(x, m, x_axis)


def _translate_pil(img, m: float, x_axis: bool):
    # torchvision's affine with translate -m * size (fractional), NEAREST, fill=128: PIL's
    # transform((1, 0, m W, 0, 1, 0)) as the authors', exact (no offset of the ten lies within
    # float error of a half pixel at 32 or 64 px)
    w, h = img.size
    shift = [-m * w, 0.0] if x_axis else [0.0, -m * h]
    return TF.affine(img, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                     interpolation=_NEAREST, fill=GREY)


def _translate_tensor(x: torch.Tensor, m: float, x_axis: bool) -> torch.Tensor:
    # written here for speed: torchvision's tensor affine gives the same pixels (translate -m * size,
    # NEAREST, fill=128) but builds a grid and samples it on every call, 2.7x the time of PIL's
    # transform((1, 0, m W, 0, 1, 0)) as one cached gather, the most frequent geometric op of the
    # CIFAR policy
    h, w = x.shape[-2:]
    return pk.affine_nearest(x, (1.0, 0.0, m * w, 0.0, 1.0, 0.0) if x_axis else (1.0, 0.0, 0.0, 0.0, 1.0, m * h))


def _rotate_pil(img, m: float):
    # torchvision's rotate, NEAREST, fill=128 = PIL's rotate(m, fillcolor=grey): the authors' RGBA
    # rotate composited over grey, exact
    return TF.rotate(img, m, interpolation=_NEAREST, fill=GREY)


def _rotate_tensor(x: torch.Tensor, m: float) -> torch.Tensor:
    # written here: torchvision's tensor rotate (grid_sample, float32) picks another neighbour than
    # PIL's 16.16 fixed point on ~0.005% of pixels
    if m % 360.0 == 0:
        return x
    h, w = x.shape[-2:]
    return pk.affine_nearest(x, pk.rotate_matrix(m, w, h))


def _solarize(img, threshold: float):
    # torchvision's solarize with the authors' threshold (x < t kept, else 255 - x), exact; threshold
    # 256 (level 0) keeps every pixel, which torchvision's tensor solarize refuses (> 255)
    if threshold > 255:
        return img.copy() if isinstance(img, Image.Image) else img
    return TF.solarize(img, threshold)


AUTHORS_OPS: dict[str, Op] = {
    "ShearX": Op(_lin(0, 0.3), True, lambda i, m: _shear_pil(i, m, True), lambda x, m: _shear_tensor(x, m, True)),
    "ShearY": Op(_lin(0, 0.3), True, lambda i, m: _shear_pil(i, m, False), lambda x, m: _shear_tensor(x, m, False)),
    # magnitudes: fractions of the image side (the op multiplies by it, as the authors' x.size[0])
    "TranslateX": Op(_lin(0, 150 / 331), True, lambda i, m: _translate_pil(i, m, True),
                     lambda x, m: _translate_tensor(x, m, True)),
    "TranslateY": Op(_lin(0, 150 / 331), True, lambda i, m: _translate_pil(i, m, False),
                     lambda x, m: _translate_tensor(x, m, False)),
    "Rotate": Op(_lin(0, 30), False, _rotate_pil, _rotate_tensor),                   # never negative
    # ImageEnhance's factor 1 +- m; PIL: torchvision's adjust_* on PIL is ImageEnhance, exact
    "Brightness": Op(_lin(0, 0.9), True, lambda i, m: TF.adjust_brightness(i, 1 + m),
                     # tensor: torchvision's adjust_brightness (x * f, truncated), exact
                     lambda x, m: TF.adjust_brightness(x, 1 + m)),
    "Color": Op(_lin(0, 0.9), True, lambda i, m: TF.adjust_saturation(i, 1 + m), lambda x, m: pk.color(x, 1 + m)),
    "Contrast": Op(_lin(0, 0.9), True, lambda i, m: TF.adjust_contrast(i, 1 + m), lambda x, m: pk.contrast(x, 1 + m)),
    "Sharpness": Op(_lin(0, 0.9), True, lambda i, m: TF.adjust_sharpness(i, 1 + m), lambda x, m: pk.sharpness(x, 1 + m)),
    # bits round(linspace(8, 4, 10)) = torchvision's; torchvision's posterize (PIL and tensor), exact
    "Posterize": Op(lambda h, w: np.round(np.linspace(8, 4, NUM_LEVELS)).astype(int), False,
                    lambda i, m: TF.posterize(i, int(m)), lambda x, m: TF.posterize(x, int(m))),
    "Solarize": Op(_lin(256, 0), False, _solarize, _solarize),
    # torchvision's autocontrast on PIL is ImageOps.autocontrast, exact
    "AutoContrast": Op(_NONE, False, lambda i, m: TF.autocontrast(i), lambda x, m: pk.autocontrast(x)),
    # torchvision's equalize (PIL: ImageOps.equalize; tensor: written to match it), exact
    "Equalize": Op(_NONE, False, lambda i, m: TF.equalize(i), lambda x, m: TF.equalize(x)),
    # torchvision's invert (255 - x), exact
    "Invert": Op(_NONE, False, lambda i, m: TF.invert(i), lambda x, m: TF.invert(x)),
}


def _torchvision_ops() -> dict[str, Op]:
    """torchvision's own ops (v2 AutoAugment: magnitudes, signs, nearest, black fill), as before recipe.aug.ops."""
    aa = v2.AutoAugment()
    v1 = transforms.AutoAugment()

    def make(name, fn, signed):
        def levels(h, w):
            mags = fn(NUM_LEVELS, h, w)
            return np.zeros(NUM_LEVELS) if mags is None else mags.numpy().astype(float)

        def pil(img, m):
            from torchvision.transforms.autoaugment import _apply_op
            return _apply_op(img, name, m, interpolation=v1.interpolation, fill=None)

        def tensor(x, m):
            return aa._apply_image_or_video_transform(x, name, m, interpolation=aa.interpolation, fill=aa._fill)
        return Op(levels, signed and fn(NUM_LEVELS, 32, 32) is not None, pil, tensor)
    return {name: make(name, fn, signed) for name, (fn, signed) in aa._AUGMENTATION_SPACE.items()}


def op_table(ops: str = "authors") -> dict[str, Op]:
    return AUTHORS_OPS if _check_ops(ops) == "authors" else _torchvision_ops()


# --- AutoAugment, per image and batched ------------------------------------------------------------

class AutoAugment:
    """The authors' policy transform (``CIFAR10Policy()`` etc.) for one image (PIL, or a uint8 tensor
    [C, H, W]): a uniform sub-policy, then each of its two ops with its probability, a random sign
    for the signed ops (not rotate)."""

    def __init__(self, policy: str = "cifar10", ops: str = "authors"):
        self.policy, self.policies, self.ops = policy, policy_table(policy), op_table(ops)

    def __call__(self, img):
        is_pil = isinstance(img, Image.Image)
        w, h = img.size if is_pil else img.shape[-1:-3:-1]
        for name, prob, level in self.policies[int(torch.randint(len(self.policies), ()))]:
            if not float(torch.rand(())) < prob:
                continue
            op = self.ops[name]
            m = float(op.levels(h, w)[level or 0])
            if op.signed and int(torch.randint(2, ())):
                m = -m
            img = op.pil(img, m) if is_pil else op.tensor(img[None], m)[0]
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy={self.policy!r})"


class BatchAutoAugment:
    """AutoAugment on a uint8 batch [B, C, H, W] (CPU or GPU), one sub-policy per image.

    As the per-image transform, every image draws its sub-policy, coins and signs; per stage the
    images that drew the same (op, signed magnitude) are transformed by one call of the op.
    """

    def __init__(self, policy: str = "cifar10", ops: str = "authors"):
        self.policy, self.policies, self.ops = policy, policy_table(policy), op_table(ops)
        self._tables: dict = {}

    def stage_tables(self, h: int, w: int) -> list[dict]:
        """Per stage, arrays over the sub-policies: probability, signed, and the ids of their
        (op, +magnitude) and (op, -magnitude) groups in ``keys``."""
        if (h, w) not in self._tables:
            stages = []
            for stage in range(2):
                keys: list[tuple[str, float]] = []
                prob, signed, key_pos, key_neg = [], [], [], []
                for sub in self.policies:
                    name, p, level = sub[stage]
                    op = self.ops[name]
                    m = float(op.levels(h, w)[level or 0])
                    for key, ids in (((name, m), key_pos), ((name, -m if op.signed else m), key_neg)):
                        if key not in keys:
                            keys.append(key)
                        ids.append(keys.index(key))
                    prob.append(p)
                    signed.append(op.signed)
                stages.append({"keys": keys, "prob": np.array(prob), "signed": np.array(signed),
                               "key_pos": np.array(key_pos), "key_neg": np.array(key_neg)})
            self._tables[(h, w)] = stages
        return self._tables[(h, w)]

    def draw(self, b: int, h: int, w: int) -> list[np.ndarray]:
        """Per stage, the group id each of ``b`` images drew (-1: that stage's op not applied)."""
        choice = torch.randint(len(self.policies), (b,)).numpy()
        keys = []
        for table in self.stage_tables(h, w):
            # a coin and a sign per image and stage, in this order: the batched path's draws before
            # recipe.aug.ops existed, so "torchvision" gives the same images for the same seed
            coin = torch.rand(b).numpy()
            negative = table["signed"][choice] & (torch.rand(b).numpy() <= 0.5)
            key = np.where(negative, table["key_neg"][choice], table["key_pos"][choice])
            key[~(coin < table["prob"][choice])] = -1
            keys.append(key)
        return keys

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        out = images
        for table, key in zip(self.stage_tables(h, w), self.draw(b, h, w)):
            order = np.argsort(key, kind="stable")                 # images grouped by key
            ids, starts = np.unique(key[order], return_index=True)
            if not (ids >= 0).any():
                continue
            out = out.clone()
            order_dev = torch.from_numpy(order).to(images.device, non_blocking=True)
            for group, start, stop in zip(ids, starts, list(starts[1:]) + [b]):
                if group < 0:
                    continue
                name, m = table["keys"][group]
                ix = order_dev[start:stop]
                out[ix] = self.ops[name].tensor(out[ix], m)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy={self.policy!r})"


# --- random erasing, per image and batched ---------------------------------------------------------

class RandomErasing:
    """The authors' ``RandomErasing`` (utils/random_erasing.py) on one normalised tensor [C, H, W].

    With probability ``p``: up to 100 draws of area ``U(sl, sh) * H * W`` and aspect (h / w)
    ``U(r1, 1/r1)``, ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``; the
    first with ``h < H`` and ``w < W`` is placed at a uniform top-left (``randint(0, H - h)``,
    inclusive) and filled per channel with ``value`` (the raw dataset mean). The authors fill a
    one-channel image with ``mean[1]`` (an RGB mean's second entry); here a one-channel ``value``
    gives ``value[0]``. Returns a new tensor (the authors write in place).
    """

    def __init__(self, p: float = 0.25, scale: tuple[float, float] = (0.02, 0.4), min_aspect: float = 0.3,
                 value: tuple = (0.4914, 0.4822, 0.4465), attempts: int = 100):
        self.p, self.scale, self.min_aspect, self.attempts = p, scale, min_aspect, attempts
        self.value = [float(v) for v in value]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not float(torch.rand(())) < self.p:
            return img
        c, h, w = img.shape
        lo, hi = self.scale
        r1 = self.min_aspect
        for _ in range(self.attempts):
            u = torch.rand(2).tolist()
            area = (lo + (hi - lo) * u[0]) * h * w
            aspect = r1 + (1 / r1 - r1) * u[1]
            eh = int(round(math.sqrt(area * aspect)))
            ew = int(round(math.sqrt(area / aspect)))
            if ew < w and eh < h:
                top = int(torch.randint(0, h - eh + 1, ()))
                left = int(torch.randint(0, w - ew + 1, ()))
                out = img.clone()
                value = torch.tensor(self.value[:c] if len(self.value) >= c else self.value[:1] * c,
                                     dtype=img.dtype)
                out[:, top:top + eh, left:left + ew] = value[:, None, None]
                return out
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, scale={self.scale}, min_aspect={self.min_aspect})"


class BatchRandomErasing:
    """Random erasing on a float batch [B, C, H, W], per image, vectorised: the attempts are drawn
    together and the first that fits is used. ``aspect="uniform"`` with 100 attempts is the authors';
    ``"log"`` with 10 is torchvision's ``RandomErasing`` (today's ``BatchAugment.erase``)."""

    def __init__(self, p: float = 0.25, scale: tuple[float, float] = (0.02, 0.4), min_aspect: float = 0.3,
                 value: tuple = (0.4914, 0.4822, 0.4465), attempts: int = 100,
                 aspect: str = "uniform"):
        if aspect not in ("uniform", "log"):
            raise ValueError(f"aspect must be 'uniform' or 'log', got {aspect!r}")
        self.p, self.scale, self.min_aspect, self.attempts, self.aspect = p, scale, min_aspect, attempts, aspect
        self.value = torch.tensor([float(v) for v in value], dtype=torch.float32)

    CHUNK = 10

    def _attempts(self, b: int, n: int, h: int, w: int, device):
        """``n`` attempts for each of ``b`` images: (height, width, fits), each [b]: the first fitting."""
        lo, hi = self.scale
        area = h * w * (lo + (hi - lo) * torch.rand(b, n, device=device))
        u = torch.rand(b, n, device=device)
        r1, r2 = self.min_aspect, 1 / self.min_aspect
        if self.aspect == "uniform":
            aspect = r1 + (r2 - r1) * u
        else:
            aspect = torch.exp(math.log(r1) + (math.log(r2) - math.log(r1)) * u)
        eh = torch.sqrt(area * aspect).round()
        ew = torch.sqrt(area / aspect).round()
        fits = (eh < h) & (ew < w)
        first = torch.argmax(fits.int(), dim=1, keepdim=True)              # first fitting attempt
        return eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1), fits.any(1)

    def boxes(self, b: int, h: int, w: int, device) -> tuple[torch.Tensor, ...]:
        """(active, top, left, height, width), each [B]: the box each image drew.

        Attempts are drawn ``CHUNK`` at a time and only images still without a fitting box draw the
        next chunk (up to ``attempts``): the same first fitting attempt as drawing all at once."""
        eh, ew, fits = self._attempts(b, min(self.CHUNK, self.attempts), h, w, device)
        done = min(self.CHUNK, self.attempts)
        while done < self.attempts:
            todo = (~fits).nonzero().squeeze(1)
            if todo.numel() == 0:                   # one host sync per chunk: rarely more than one
                break
            n = min(self.CHUNK, self.attempts - done)
            th, tw, tf = self._attempts(todo.numel(), n, h, w, device)
            eh[todo], ew[todo], fits[todo] = th, tw, tf
            done += n
        active = (torch.rand(b, device=device) < self.p) & fits
        top = (torch.rand(b, device=device) * (h - eh + 1)).floor()
        left = (torch.rand(b, device=device) * (w - ew + 1)).floor()
        return active, top, left, eh, ew

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        dev = x.device
        active, top, left, eh, ew = self.boxes(b, h, w, dev)
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])         # [B, H]
        in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])       # [B, W]
        box = in_rows[:, :, None] & in_cols[:, None, :] & active[:, None, None]
        value = self.value if len(self.value) >= c else self.value[:1].expand(c)
        return torch.where(box[:, None], value[:c].to(dev, x.dtype)[None, :, None, None], x)


# --- the selector ------------------------------------------------------------------------------------

def per_image_autoaugment(policy: str, ops: str = "authors"):
    """PIL -> PIL AutoAugment for ``data.build_transforms``."""
    if _check_ops(ops) == "torchvision":
        return transforms.AutoAugment(AUTOAUGMENT_POLICIES[policy])
    return AutoAugment(policy)


def batch_autoaugment(policy: str, ops: str = "authors") -> BatchAutoAugment:
    """uint8 [B, C, H, W] -> uint8 AutoAugment, one sub-policy per image, for ``gmmvit.data.batched.BatchAugment``."""
    return BatchAutoAugment(policy, ops)


def per_image_erasing(p: float, max_area: float = 0.4, min_aspect: float = 0.3,
                      value: tuple = (0.4914, 0.4822, 0.4465), ops: str = "authors"):
    """Random erasing of one normalised tensor, for ``data.build_transforms`` (after Normalize)."""
    if _check_ops(ops) == "torchvision":
        return transforms.RandomErasing(p=p, scale=(0.02, max_area), ratio=(min_aspect, 1 / min_aspect),
                                        value=list(value))
    return RandomErasing(p, (0.02, max_area), min_aspect, value)


def batch_erasing(p: float, max_area: float = 0.4, min_aspect: float = 0.3,
                  value: tuple = (0.4914, 0.4822, 0.4465), ops: str = "authors") -> BatchRandomErasing:
    """Random erasing of a normalised float batch [B, C, H, W], for ``gmmvit.data.batched.BatchAugment``."""
    if _check_ops(ops) == "torchvision":
        return BatchRandomErasing(p, (0.02, max_area), min_aspect, value, attempts=10, aspect="log")
    return BatchRandomErasing(p, (0.02, max_area), min_aspect, value, attempts=100, aspect="uniform")


__all__ = ["OPS", "AUTOAUGMENT_POLICIES", "policy_table", "Op", "AUTHORS_OPS", "op_table", "AutoAugment",
           "BatchAutoAugment", "RandomErasing", "BatchRandomErasing", "per_image_autoaugment", "batch_autoaugment",
           "per_image_erasing", "batch_erasing"]
