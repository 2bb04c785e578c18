"""The dataset keys checked against the data before any of it is loaded: its class and channel
counts against what the data holds (``gmmvit.data.facts``), and the batch size against the
training images the split settings leave (``gmmvit.catalog.TRAIN_SIZE``)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from gmmvit.catalog import TRAIN_SIZE
from gmmvit.data.facts import facts
from gmmvit.data.sampling import batch_fixes
from gmmvit.errors import ConfigError


def check_dataset_facts(ds: DictConfig) -> None:
    """``dataset.num_classes`` and ``dataset.channels`` are the data's own."""
    try:
        root = OmegaConf.select(ds, "source.root", throw_on_resolution_failure=True)
    except Exception:  # a data folder that resolves only inside a job: the format's facts
        root = None
    found = facts(str(OmegaConf.select(ds, "source._target_")), root)
    if found is None:
        return
    for key, value in (("num_classes", found.num_classes), ("channels", found.channels)):
        if ds[key] != value:
            raise ConfigError(f"dataset.{key}={ds[key]}: dataset {ds.name} has {value} "
                              f"{'classes' if key == 'num_classes' else 'channel(s)'} ({found.where}); "
                              f"set dataset.{key}={value} or leave it to the dataset's file")


def most_training_images(cfg: DictConfig) -> tuple[int, list[str]]:
    """At most how many training images the run's split settings leave, with the settings that cut
    them. Each class keeps ``max(1, round(f x n_c))``: at most ``f x n + C`` in all."""
    ds, n = cfg.dataset, TRAIN_SIZE[cfg.dataset.name]
    classes, cut = ds.num_classes, []
    val = ds.get("val_fraction", 0.0) or 0.0
    if val > 0:
        n -= max(classes, int(val * n - classes / 2))
        cut.append(f"dataset.val_fraction={val}")
    train = ds.get("train_fraction", 1.0)
    if train < 1:
        n = min(n, int(train * n) + classes)
        cut.append(f"dataset.train_fraction={train}")
    if cfg.limit_train is not None and cfg.limit_train < n:
        n = cfg.limit_train
        cut.append(f"limit_train={cfg.limit_train}")
    return n, cut


def check_full_batch(cfg: DictConfig) -> None:
    """With ``recipe.drop_last`` a training set smaller than one batch trains nothing."""
    recipe = cfg.recipe
    if not recipe.drop_last or cfg.dataset.name not in TRAIN_SIZE:
        return
    n, cut = most_training_images(cfg)
    if n < recipe.batch_size:
        bound = "at most " if any(not c.startswith("limit_train=") for c in cut) else ""
        images = f"the {bound}{n} training images left by {' and '.join(cut)}" if cut else \
            f"the {n} training images of {cfg.dataset.name}"
        raise ConfigError(f"recipe.batch_size={recipe.batch_size}: no full batch of {recipe.batch_size} in "
                          f"{images}; {batch_fixes(cut)}")
