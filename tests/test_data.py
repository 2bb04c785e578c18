"""Datasets: torchvision's own classes on real data, the offline error, the paper's sampler."""

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from gmmvit import errors
from gmmvit.data import datasets, sampling, transforms


def test_missing_dataset_without_network_is_one_line_naming_the_folder(tmp_path):
    with pytest.raises(errors.DatasetUnavailable) as err:
        datasets.cifar10(str(tmp_path / "cifar10"), train=True)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "cifar10") in message and "cifar-10-batches-py" in message


def test_fashion_mnist_is_read_by_torchvision_from_the_debian_package(data_dir):
    train = datasets.fashion_mnist(str(data_dir / "fashion_mnist"), train=True)
    test = datasets.fashion_mnist(str(data_dir / "fashion_mnist"), train=False)
    assert type(train).__name__ == "FashionMNIST"
    assert (len(train), len(test)) == (60000, 10000)
    img, label = train[0]
    assert img.size == (28, 28) and 0 <= label < 10


def test_digits_split_is_fixed_and_disjoint():
    train, test = datasets.digits("", train=True), datasets.digits("", train=False)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert datasets.digits("", train=True).targets == train.targets


def test_tinyimagenet_val_is_regrouped_by_class(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    base.mkdir()
    (base / "wnids.txt").write_text("n01\nn02\n")
    for wnid in ("n01", "n02"):
        (base / "train" / wnid / "images").mkdir(parents=True)
        Image.new("RGB", (64, 64), "red").save(base / "train" / wnid / "images" / f"{wnid}_0.JPEG")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, wnid in enumerate(("n01", "n02", "n02")):
        Image.new("RGB", (64, 64), "blue").save(base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    train = datasets.tinyimagenet(str(tmp_path), train=True)
    val = datasets.tinyimagenet(str(tmp_path), train=False)
    assert train.classes == val.classes == ["n01", "n02"]
    assert sorted(val.targets) == [0, 1, 1]
    assert datasets.tinyimagenet(str(tmp_path), train=False).targets == val.targets  # idempotent


def test_missing_tinyimagenet_names_the_folder_and_the_download(tmp_path):
    with pytest.raises(errors.DatasetUnavailable, match="tiny-imagenet-200"):
        datasets.tinyimagenet(str(tmp_path), train=True)


def test_an_epoch_is_three_fresh_permutations_and_depends_only_on_seed_and_epoch():
    sampler = sampling.RepeatedPassSampler(10, passes=3, seed=0)
    order = list(sampler)
    assert len(order) == 30
    passes = [order[i * 10:(i + 1) * 10] for i in range(3)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert passes[0] != passes[1]
    again = sampling.RepeatedPassSampler(10, passes=3, seed=0)
    assert list(again) == order
    sampler.set_epoch(1)
    assert list(sampler) != order


def _aug_cfg(**over):
    aug = {"hflip": True, "crop_padding": 4, "autoaugment": True, "random_erasing": 0.25,
           "random_erasing_max_area": 0.4, "random_erasing_min_aspect": 0.3, "ops": "authors", **over}
    return OmegaConf.create(aug)


def test_training_pipeline_is_the_papers_for_cifar():
    ds = OmegaConf.create({"img_size": 32, "native_size": 32, "resize": "pad", "mean": [0.5] * 3,
                           "std": [0.25] * 3, "hflip": True, "autoaugment_policy": "cifar10"})
    names = [type(t).__name__ for t in transforms.build_transforms(ds, _aug_cfg(), train=True).transforms]
    assert names == ["RandomHorizontalFlip", "RandomCrop", "AutoAugment", "ToTensor", "Normalize",
                     "RandomErasing"]
    out = transforms.build_transforms(ds, _aug_cfg(), train=True)(Image.new("RGB", (32, 32)))
    assert out.shape == (3, 32, 32)


def test_small_grayscale_images_reach_the_model_size():
    ds = OmegaConf.create({"img_size": 32, "native_size": 28, "resize": "pad", "mean": [0.5], "std": [0.5],
                           "hflip": True, "autoaugment_policy": None})
    img = Image.fromarray(np.zeros((28, 28), np.uint8), mode="L")
    assert transforms.build_transforms(ds, _aug_cfg(), train=False)(img).shape == (1, 32, 32)
    assert transforms.build_transforms(ds, _aug_cfg(), train=True)(img).shape == (1, 32, 32)
