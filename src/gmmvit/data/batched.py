"""The paper's training augmentation for a whole uint8 batch ``[B, C, H, W]``, on the GPU (or the CPU).

At CIFAR size the per-image PIL pipeline (``gmmvit.data.transforms``) runs at a
few thousand images per second per core (gmmvit/paper: 2,800-4,300), which is the
same order as what one modern GPU consumes for these small models. Here the
training split is one ``uint8 [N, C, H, W]`` tensor on the device (CIFAR-10:
150 MB, ``gmmvit.data.resident``) and each batch goes through the same recipe as ``build_transforms``,
in the same order, as batched tensor operations:

1. horizontal flip (p = 0.5, per image);
2. random crop with zero padding ``aug.crop_padding`` (per-image offsets);
3. AutoAugment with the dataset's policy, on uint8 (torchvision's v2 ops).
   ``autoaugment="sample"`` (default) is faithful to the per-image pipeline:
   each image draws its own sub-policy, probabilities and signs, and images
   that drew the same (op, magnitude) are transformed together.
   ``autoaugment="batch"`` calls ``torchvision.transforms.v2.AutoAugment`` on
   chunks of ``chunk`` images: v2 draws ONE sub-policy (and one coin per op,
   one sign) per call, shared by the whole chunk - cheaper, less diverse;
4. scaling to [0, 1] and normalisation;
5. random erasing (per image: up to 10 attempts, as torchvision's
   ``RandomErasing``, filled with the dataset mean as in ``build_transforms``).

Mixup/CutMix stay in the train loop (timm's ``Mixup`` works on device tensors).
Batches follow the ``RepeatedPassSampler`` order exactly, so resumes and
epochs see the same images as the DataLoader path (the random augmentation
itself draws from torch's device RNG, and the CPU RNG for AutoAugment choices).

Everything runs on CPU tensors too (tests, and ``make bench``'s batched-tensor
loader figure).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from gmmvit.data.transforms import AUTOAUGMENT_POLICIES

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


class SampleAutoAugment(v2.AutoAugment):
    """AutoAugment with one sub-policy per image (as per-image torchvision), on a uint8 batch.

    Per stage of the two-op sub-policies, images are grouped by the (op, signed magnitude) they
    drew and each group is transformed by one call of torchvision's v2 op.
    """

    def _stage_tables(self, h: int, w: int) -> list[dict]:
        """Per stage, arrays over the sub-policies: probability, signed, and the ids of the
        (op, +magnitude) and (op, -magnitude) groups in ``keys``."""
        cache = self.__dict__.setdefault("_tables", {})
        if (h, w) not in cache:
            stages = []
            for stage in range(2):
                keys: list[tuple[str, float]] = []
                prob, signed, key_pos, key_neg = [], [], [], []
                for policy in self._policies:
                    transform_id, probability, magnitude_idx = policy[stage]
                    magnitudes_fn, is_signed = self._AUGMENTATION_SPACE[transform_id]
                    magnitudes = magnitudes_fn(10, h, w)
                    magnitude = 0.0 if magnitudes is None else float(magnitudes[magnitude_idx])
                    for key, ids in (((transform_id, magnitude), key_pos), ((transform_id, -magnitude), key_neg)):
                        if key not in keys:
                            keys.append(key)
                        ids.append(keys.index(key))
                    prob.append(probability)
                    signed.append(is_signed and magnitudes is not None)
                stages.append({"keys": keys, "prob": np.array(prob), "signed": np.array(signed),
                               "key_pos": np.array(key_pos), "key_neg": np.array(key_neg)})
            cache[(h, w)] = stages
        return cache[(h, w)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] uint8
        b = images.shape[0]
        h, w = images.shape[-2:]
        choice = torch.randint(len(self._policies), (b,)).numpy()
        out = images
        for table in self._stage_tables(h, w):
            coin = torch.rand(b).numpy()
            sign = torch.rand(b).numpy()
            negative = table["signed"][choice] & (sign <= 0.5)
            key = np.where(negative, table["key_neg"][choice], table["key_pos"][choice])
            key[~(coin <= table["prob"][choice])] = -1          # this stage's op not applied
            order = np.argsort(key, kind="stable")                 # images grouped by key, in index order
            ids, starts = np.unique(key[order], return_index=True)
            if not (ids >= 0).any():
                continue
            out = out.clone()
            # one host-to-device copy per stage: every group's indices, back to back
            order_dev = torch.from_numpy(order).to(images.device, non_blocking=True)
            ends = list(starts[1:]) + [b]
            for group, start, stop in zip(ids, starts, ends):
                if group < 0:
                    continue
                transform_id, magnitude = table["keys"][group]
                ix = order_dev[start:stop]
                out[ix] = self._apply_image_or_video_transform(
                    out[ix], transform_id, magnitude, interpolation=self.interpolation, fill=self._fill)
        return out


class BatchAugment:
    """The paper's training augmentation (``build_transforms``) for a whole uint8 batch."""

    def __init__(self, ds, aug, autoaugment: str = "sample", chunk: int = 16):
        self.mean = torch.tensor(list(ds.mean), dtype=torch.float32)
        self.std = torch.tensor(list(ds.std), dtype=torch.float32)
        self.hflip = bool(aug.hflip and ds.hflip)
        self.padding = int(aug.crop_padding or 0)
        self.erasing = float(aug.random_erasing or 0.0)
        self.erasing_scale = (0.02, float(aug.get("random_erasing_max_area", 0.4)))
        min_aspect = float(aug.get("random_erasing_min_aspect", 0.3))
        self.erasing_log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
        self.autoaugment = None
        self.chunk = chunk
        if aug.autoaugment and ds.autoaugment_policy:
            policy = AUTOAUGMENT_POLICIES[ds.autoaugment_policy]
            if autoaugment == "sample":
                self.autoaugment = SampleAutoAugment(policy)
            elif autoaugment == "batch":
                self.autoaugment = v2.AutoAugment(policy)
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

    def erase(self, x: torch.Tensor, attempts: int = 10) -> torch.Tensor:
        """torchvision's RandomErasing per image: up to 10 (area, aspect) draws, the first that fits."""
        b, c, h, w = x.shape
        dev = x.device
        lo, hi = self.erasing_scale
        area = h * w * (lo + (hi - lo) * torch.rand(b, attempts, device=dev))
        llo, lhi = self.erasing_log_ratio
        aspect = torch.exp(llo + (lhi - llo) * torch.rand(b, attempts, device=dev))
        eh = torch.sqrt(area * aspect).round()
        ew = torch.sqrt(area / aspect).round()
        fits = (eh < h) & (ew < w)
        first = torch.argmax(fits.int(), dim=1, keepdim=True)              # first fitting attempt
        eh = eh.gather(1, first).squeeze(1)
        ew = ew.gather(1, first).squeeze(1)
        active = (torch.rand(b, device=dev) < self.erasing) & fits.any(1)
        top = (torch.rand(b, device=dev) * (h - eh + 1)).floor()
        left = (torch.rand(b, device=dev) * (w - ew + 1)).floor()
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])         # [B, H]
        in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])       # [B, W]
        box = in_rows[:, :, None] & in_cols[:, None, :] & active[:, None, None]
        value = self.mean.to(dev)[None, :, None, None]
        return torch.where(box[:, None], value, x)

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


__all__ = ["split_arrays", "to_model_size", "normalize", "SampleAutoAugment", "BatchAugment", "IMAGES_PER_CALL"]
