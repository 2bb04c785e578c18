"""The paper's training augmentation per image (PIL), as the DataLoader path runs it: flip, crop
(pad 4), AutoAugment, tensor, normalise, random erasing, with the AutoAugment ops and erasing of
``recipe.aug.ops`` (``gmmvit.data.authors_ops``: the authors' by default, or torchvision's).
``gmmvit.data.batched`` is the same recipe for a whole uint8 batch."""

from __future__ import annotations

from torch.utils.data import Dataset
from torchvision import transforms

from gmmvit.data.authors_ops import per_image_autoaugment, per_image_erasing


class Transformed(Dataset):
    """A dataset with a transform applied to its images (torchvision's classes take one at build time;
    this lets the same loaded split serve several pipelines)."""

    def __init__(self, base: Dataset, transform):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        img, target = self.base[i]
        if self.transform is not None:
            img = self.transform(img)
        return img, target


# how small images (Fashion-MNIST 28px, digits 8px) reach the model's input size
RESIZES = ("pad", "resize")


def build_transforms(ds, aug, train: bool):
    """The paper's pipeline: flip, crop (pad 4), AutoAugment, tensor, normalise, random erasing; the
    AutoAugment ops and the erasing are ``aug.ops``'s (the authors' or torchvision's)."""
    size = ds.img_size
    pre = []
    if ds.native_size != size:
        # small images (Fashion-MNIST 28px, digits 8px) are brought to the model's input size
        pre.append(transforms.Resize(size) if ds.resize == "resize" else
                   transforms.Pad((size - ds.native_size) // 2))
    # plain lists, not OmegaConf ListConfigs: torch turns them into tensors
    post = [transforms.ToTensor(), transforms.Normalize(list(ds.mean), list(ds.std))]
    if not train:
        return transforms.Compose(pre + post)
    steps = list(pre)
    if aug.hflip and ds.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    if aug.crop_padding:
        steps.append(transforms.RandomCrop(size, padding=aug.crop_padding))
    if aug.autoaugment and ds.autoaugment_policy:
        steps.append(per_image_autoaugment(str(ds.autoaugment_policy), str(aug.ops)))
    steps += post
    if aug.random_erasing > 0:
        steps.append(per_image_erasing(aug.random_erasing, aug.random_erasing_max_area,
                                       aug.random_erasing_min_aspect, list(ds.mean), str(aug.ops)))
    return transforms.Compose(steps)
