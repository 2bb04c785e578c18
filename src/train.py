"""Hydra entry point: `python src/train.py model=vit mask=gmm dataset=cifar10` (add -m for a sweep)."""

import sys

import hydra
from omegaconf import DictConfig

from gmmvit.config.reporting import guarded
from gmmvit.config.resolvers import register_with_hydra
from gmmvit.errors import survive_a_reader_leaving

register_with_hydra()
survive_a_reader_leaving()  # `train.py | head`: the run trains on after head has its lines


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from gmmvit.config.fusing import train_job

    result = guarded(train_job, cfg)
    return (result or {}).get("final", {}).get("best_top1", float("nan"))


if __name__ == "__main__":
    sys.exit(main())
