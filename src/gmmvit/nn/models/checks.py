"""Checks and choices shared by the model files."""

from __future__ import annotations

from gmmvit.errors import ConfigError

# What a model reads out of its tokens: the class token, or the mean over the grid tokens.
READOUTS = ("token", "mean")
# model.pool: auto = the authors' choice per mask (ViT); CaiT's class attention is its own pooling
POOLS = ("auto", *READOUTS, "class_attention")


def check_divisible(model: str, img_size: int, divisor: int, what: str) -> None:
    if img_size % divisor:
        raise ConfigError(
            f"model={model} cannot take {img_size}px images: the size must be a multiple of its "
            f"{what} ({divisor}); pick a dataset with a fitting img_size or set dataset.img_size")


def resolve_pool(pool: str, masked: bool) -> str:
    """'auto' is the authors' choice: class token without a mask, mean pooling with one."""
    if pool == "auto":
        return "mean" if masked else "token"
    if pool not in READOUTS:
        raise ConfigError(f"pool must be 'auto', 'token' or 'mean', got {pool!r}")
    return pool


POOLED_MODELS = ("vit", "pit")  # the models whose class token meets the mask (model.pool: token or mean)


def check_pool(model: str, pool: str, only: str, why: str) -> None:
    """Models that pool one way whatever the mask still name it (``model.pool``), for the pooling sweep."""
    if pool != only:
        raise ConfigError(f"model={model} {why}, so model.pool must be {only!r}, got {pool!r}; "
                          f"the pooling ablation applies to {' and '.join(POOLED_MODELS)}")
