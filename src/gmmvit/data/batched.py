"""The paper's training augmentation for a whole uint8 batch ``[B, C, H, W]``, on the GPU (or the CPU).

At CIFAR size the per-image PIL pipeline (``gmmvit.data.transforms``) runs at a
few thousand images per second per core (gmmvit/paper: 2,800-4,300), which is the
same order as what one modern GPU consumes for these small models. Here the
training split is one ``uint8 [N, C, H, W]`` tensor on the device (CIFAR-10:
150 MB, ``gmmvit.data.resident``) and each batch goes through the same recipe as ``build_transforms``,
in the same order, as batched tensor operations:

1. horizontal flip (p = 0.5, per image);
2. random crop with zero padding ``aug.crop_padding`` (per-image offsets);
3. AutoAugment with the dataset's policy, on uint8, with the ops of ``recipe.aug.ops``
   (``gmmvit.data.authors_ops``). ``autoaugment="sample"`` (default, what training runs) is
   faithful to the per-image pipeline: each image draws its own sub-policy, coins and signs, and
   images that drew the same (op, magnitude) are transformed together.
   ``ops="authors"`` (default) matches the authors' ops (their ``utils/autoaug.py`` and
   ``utils/transforms.py``): every op bit-exact to their PIL op but the bicubic shear, within one
   level on 0.07% of pixels (float32 weights); grey fill, rotation always counter-clockwise,
   fractional translate, solarize on a 256 scale.
   ``ops="torchvision"`` runs torchvision's v2 ops (nearest, black fill, random rotation sign),
   the same images for the same seed as before the key existed.
   ``autoaugment="batch"`` (a speed reference of ``make bench``, never a training path) calls
   ``torchvision.transforms.v2.AutoAugment`` on chunks of ``chunk`` images whatever ``ops``:
   v2 draws ONE sub-policy (and one coin per op, one sign) per call, shared by the whole chunk;
4. scaling to [0, 1] and normalisation;
5. random erasing, per image, filled with the dataset mean as in ``build_transforms``:
   ``ops="authors"`` as their ``utils/random_erasing.py`` (aspect uniform in [r1, 1/r1], up to
   100 attempts), ``ops="torchvision"`` as torchvision's ``RandomErasing`` (log-uniform, 10).

Mixup/CutMix stay in the train loop (timm's ``Mixup`` works on device tensors).
Batches follow the ``RepeatedPassSampler`` order exactly, so resumes and
epochs see the same images as the DataLoader path (the random augmentation
itself draws from torch's device RNG, and the CPU RNG for AutoAugment choices).

Everything runs on CPU tensors too (tests, and ``make bench``'s batched-tensor
loader figure).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from gmmvit.data.authors_ops import AUTOAUGMENT_POLICIES, batch_autoaugment, batch_erasing

# Images augmented per call. A call costs ~1,200 small tensor ops whatever its size (one per
# AutoAugment (op, magnitude) group and stage): on a GPU that launch cost is the price, so calls are
# large; on a CPU the ops do real work and 1,024 images keep it in cache (one core, CIFAR:
# 11,100 img/s at 128 per call, 19,200 at 1,024, 12,800 at 8,192).
IMAGES_PER_CALL = {"cpu": 1024, "cuda": 8192}


# --- the split as one uint8 tensor ------------------------------------------------------------

def split_arrays(split: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 [N, C, H, W], targets int64 [N])`` of a raw split, as its PIL images hold them.

    Reads torchvision's in-memory arrays (``.data`` with ``.targets``/``.labels``: CIFAR, SVHN,
    Fashion-MNIST, digits) directly, and ``Subset`` through its indices; anything else (an
    ImageFolder) is decoded image by image once.
    """
    if isinstance(split, Subset):
        images, targets = split_arrays(split.dataset)
        idx = torch.as_tensor(np.asarray(split.indices), dtype=torch.long)
        return images[idx], targets[idx]
    data = getattr(split, "data", None)
    labels = getattr(split, "targets", None)
    if labels is None:
        labels = getattr(split, "labels", None)
    if data is not None and labels is not None and len(data) == len(split):
        images = torch.as_tensor(np.asarray(data))
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        if images.dim() == 3:                                   # [N, H, W] grey
            images = images.unsqueeze(1)
        elif images.dim() == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.permute(0, 3, 1, 2)                 # NHWC (CIFAR) -> NCHW
        targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        return images.contiguous(), targets
    images, targets = [], []
    for i in range(len(split)):
        img, target = split[i]
        arr = np.asarray(img, dtype=np.uint8)
        images.append(torch.from_numpy(arr.copy()))
        targets.append(int(target))
    stacked = torch.stack(images)
    stacked = stacked.unsqueeze(1) if stacked.dim() == 3 else stacked.permute(0, 3, 1, 2)
    return stacked.contiguous(), torch.tensor(targets, dtype=torch.long)


def to_model_size(images: torch.Tensor, ds) -> torch.Tensor:
    """The deterministic first step of ``build_transforms``: pad or resize to ``ds.img_size``."""
    size = ds.img_size
    if ds.native_size == size and images.shape[-1] == size:
        return images
    if ds.resize == "resize":
        return TF.resize(images, [size, size], antialias=True)
    pad = (size - images.shape[-1]) // 2
    return F.pad(images, (pad, pad, pad, pad))


# --- batched augmentation ---------------------------------------------------------------------

def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float32, as ``ToTensor`` then ``Normalize(mean, std)``."""
    return (x.float().div_(255.0) - mean.to(x.device)[:, None, None]).div_(std.to(x.device)[:, None, None])


class BatchAugment:
    """The paper's training augmentation (``build_transforms``) for a whole uint8 batch, with the
    AutoAugment ops and random erasing of ``aug.ops`` (the module's docstring says what each matches)."""

    def __init__(self, ds, aug, autoaugment: str = "sample", chunk: int = 16):
        self.mean = torch.tensor(list(ds.mean), dtype=torch.float32)
        self.std = torch.tensor(list(ds.std), dtype=torch.float32)
        self.hflip = bool(aug.hflip and ds.hflip)
        self.padding = int(aug.crop_padding or 0)
        self.erasing = float(aug.random_erasing or 0.0)
        self.erase = batch_erasing(self.erasing, float(aug.get("random_erasing_max_area", 0.4)),
                                   float(aug.get("random_erasing_min_aspect", 0.3)), list(ds.mean), str(aug.ops))
        self.autoaugment = None
        self.chunk = chunk
        if aug.autoaugment and ds.autoaugment_policy:
            if autoaugment == "sample":
                self.autoaugment = batch_autoaugment(str(ds.autoaugment_policy), str(aug.ops))
            elif autoaugment == "batch":
                self.autoaugment = v2.AutoAugment(AUTOAUGMENT_POLICIES[ds.autoaugment_policy])
            else:
                raise ValueError(f"autoaugment must be 'sample' or 'batch', got {autoaugment!r}")
        self.autoaugment_mode = autoaugment

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        b, c, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        i = torch.randint(0, 2 * p + 1, (b,), device=x.device)
        j = torch.randint(0, 2 * p + 1, (b,), device=x.device)
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)   # view [B, C, 2p+1, 2p+1, H, W]
        return windows[torch.arange(b, device=x.device), :, i, j]  # [B, C, H, W]

    def auto_augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.autoaugment_mode == "batch":
            return torch.cat([self.autoaugment(part) for part in x.split(self.chunk)])
        return self.autoaugment(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, H, W]`` -> float32 normalised, augmented."""
        if self.hflip:
            x = self.flip(x)
        if self.padding:
            x = self.crop(x)
        if self.autoaugment is not None:
            x = self.auto_augment(x)
        x = self.normalize(x)
        if self.erasing > 0:
            x = self.erase(x)
        return x


__all__ = ["split_arrays", "to_model_size", "normalize", "BatchAugment", "IMAGES_PER_CALL"]
