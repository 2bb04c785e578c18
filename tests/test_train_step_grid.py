"""Every model x mask x dataset of the table (and Fashion-MNIST) composes and takes a training step
on CPU: the 64 px Tiny-ImageNet setting and the 1-channel datasets included."""

import pytest
import torch

from gmmvit.data import datasets, transforms
from gmmvit.run.recipe import build_criterion, build_mixup, build_optimizer
from gmmvit.run.train import build_model

MODELS = ["vit", "swin", "cait", "pit", "t2t"]
MASKS = ["none", "elm", "gmm"]
DATASETS = ["cifar10", "cifar100", "svhn", "tinyimagenet", "fashion_mnist"]


def _batch(cfg, data_dir, n=4):
    ds = cfg.dataset
    if ds.name == "fashion_mnist":  # real images through the real training pipeline
        split = datasets.fashion_mnist(str(data_dir / "fashion_mnist"), train=True)
        tf = transforms.build_transforms(ds, cfg.recipe.aug, train=True)
        items = [split[i] for i in range(n)]
        return torch.stack([tf(img) for img, _ in items]), torch.tensor([t for _, t in items])
    # CIFAR/SVHN/Tiny-ImageNet are not on a CI machine: tensors of their exact shape stand in
    return torch.randn(n, ds.channels, ds.img_size, ds.img_size), torch.randint(0, ds.num_classes, (n,))


@pytest.mark.parametrize("dataset", [pytest.param(d, marks=pytest.mark.slow) if d == "tinyimagenet" else d
                                     for d in DATASETS])
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("model", MODELS)
def test_model_mask_dataset_takes_a_training_step(compose_config, data_dir, model, mask, dataset):
    torch.manual_seed(0)
    cfg = compose_config([f"model={model}", f"mask={mask}", f"dataset={dataset}"])
    net = build_model(cfg)
    optimizer = build_optimizer(cfg.recipe, net)
    mixup = build_mixup(cfg.recipe, cfg.dataset.num_classes)
    criterion = build_criterion(cfg.recipe, mixup)
    images, targets = _batch(cfg, data_dir)
    images, soft = mixup(images, targets)
    before = [p.detach().clone() for p in net.parameters()]
    loss = criterion(net(images), soft)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
