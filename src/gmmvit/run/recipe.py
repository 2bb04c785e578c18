"""The paper's optimisation recipe, assembled from timm and torch: AdamW, cosine with per-iteration
warm-up, Mixup/CutMix with label smoothing, and the soft-target loss."""

from __future__ import annotations

import inspect

import torch
from hydra.utils import instantiate
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.scheduler import CosineLRScheduler
from torch import nn


def build_optimizer(recipe, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer; on CUDA its fused kernel (one launch for all parameters instead of
    several per tensor group) where the class has one and the config does not choose."""
    make = instantiate(recipe.optimizer)
    params = list(model.parameters())
    kwargs = {}
    on_cuda = bool(params) and all(p.is_cuda for p in params)
    chosen = getattr(make, "keywords", {})
    if on_cuda and "fused" not in chosen and "fused" in inspect.signature(getattr(make, "func", make)).parameters:
        kwargs["fused"] = True
    return make(params, **kwargs)


def build_scheduler(recipe, optimizer, steps_per_epoch: int) -> CosineLRScheduler:
    """The authors' CosineAnnealingWarmupRestarts: linear from min_lr to lr over the warm-up
    iterations, then one cosine to min_lr over the rest; stepped every iteration."""
    total = int(recipe.epochs * steps_per_epoch)
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    return CosineLRScheduler(
        optimizer, t_initial=max(total - warmup, 1), lr_min=recipe.min_lr,
        warmup_t=warmup, warmup_lr_init=recipe.min_lr, warmup_prefix=True, t_in_epochs=False)


def build_mixup(recipe, num_classes: int):
    """timm's Mixup/CutMix, or None when the recipe mixes nothing."""
    mix = recipe.mix
    if not mix or mix.prob <= 0 or (mix.mixup_alpha <= 0 and mix.cutmix_alpha <= 0):
        return None
    return Mixup(mixup_alpha=mix.mixup_alpha, cutmix_alpha=mix.cutmix_alpha, prob=mix.prob,
                 switch_prob=mix.switch_prob, mode="batch",
                 label_smoothing=recipe.label_smoothing, num_classes=num_classes)


def build_criterion(recipe, mixup) -> nn.Module:
    # Mixup already folds label smoothing into its soft targets
    if mixup is not None:
        return SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return nn.CrossEntropyLoss()
