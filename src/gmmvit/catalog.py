"""Facts every layer reads, each kept here once: where the repository's folders are, the paper's
grid (models x masks x datasets), the datasets' sizes, and which settings only change speed."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
MULTIRUN = REPO / "multirun"
TRAIN_SCRIPT = REPO / "src" / "train.py"

# the paper's table, in its order
MODELS = ("vit", "swin", "cait", "pit", "t2t")
MASKS = ("none", "elm", "gmm")
PAPER_DATASETS = ("cifar10", "cifar100", "svhn", "tinyimagenet")
# and the small real datasets the demo and the tests train on
DATASETS = PAPER_DATASETS + ("fashion_mnist", "digits")

# images per training pass / per test pass (the authors train SVHN on its train split only)
TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "tinyimagenet": 100_000,
              "fashion_mnist": 60_000, "digits": 1_437}
TEST_SIZE = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032, "tinyimagenet": 10_000,
             "fashion_mnist": 10_000, "digits": 360}

# Settings that change where and how fast a run trains, not what it trains: they take no part in a
# run folder's name (conf/config.yaml reads this list through the ``run_name_excluded`` resolver),
# and they never split a cell of ``make table``.
SPEED_SETTINGS = ("device", "runs_per_gpu", "fused", "workers", "threads", "compile", "precision", "attention",
                  "data_on_gpu", "step_graph", "profile_steps")
# Bookkeeping that names no setting of the training: also out of the folder name.
RUN_NAME_BOOKKEEPING = ("sweep", "gain_reference", "paths.data", "logger", "logger.mode", "experiment")
# make table: besides the speed settings, what tells runs of one cell apart without changing it
TABLE_BOOKKEEPING = ("seed", "run_dir", "sweep", "gain_reference", "deterministic")


def run_name_excluded() -> list[str]:
    """The keys Hydra leaves out of a run folder's name (``hydra.job.config.override_dirname``)."""
    return [*RUN_NAME_BOOKKEEPING, *SPEED_SETTINGS]
