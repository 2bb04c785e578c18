"""One trained run's attention locality: each layer's mean attention distance per head
(``gmmvit.nn.locality``) over a fixed test batch, written as ``analysis/attention_locality.json`` in
the run folder.

The batch is the first ``images`` images of the test split (the same images for every run of a
dataset), through the test pipeline the run evaluated with (``eval_loader``), on the explicit
attention path (the only one that materialises the maps), at the run's device and precision.
The command is ``make locality`` (``gmmvit.config.locality``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from gmmvit.data.datasets import load_splits
from gmmvit.nn.attention import use_attention
from gmmvit.nn.locality import AttentionLocality
from gmmvit.run import devices
from gmmvit.run.evaluate import uses_bf16, weights_of
from gmmvit.run.loaders import eval_loader
from gmmvit.run.progress import epoch_label
from gmmvit.run.records import write_json
from gmmvit.run.train import build_model

ANALYSIS_DIR = "analysis"
LOCALITY_JSON = "attention_locality.json"
DEFAULT_IMAGES = 256


def locality_path(run_dir: Path) -> Path:
    return Path(run_dir) / ANALYSIS_DIR / LOCALITY_JSON


@torch.no_grad()
def measure_run(cfg: DictConfig, run_dir: Path, checkpoint: str = "best", images: int = DEFAULT_IMAGES) -> dict:
    """Measure the run in ``run_dir`` (built as ``cfg`` says) and write its JSON; returns what it holds."""
    weights, epoch, source = weights_of(run_dir, checkpoint)
    device = devices.pick_device(cfg.device, cfg.get("runs_per_gpu", 1))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = uses_bf16(cfg, device)
    model = build_model(cfg)
    model.load_state_dict(weights)
    use_attention(model.to(device).eval(), "explicit")
    _, test_split = load_splits(cfg.dataset)
    batch = torch.utils.data.Subset(test_split, range(min(images, len(test_split))))
    with AttentionLocality(model) as locality:
        for x, _ in eval_loader(batch, cfg, device, 0):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
                model(x.to(device))
    result = {"run": str(run_dir), "checkpoint": checkpoint, "weights": source, "epoch": epoch,
              "epochs": cfg.recipe.epochs, "model": cfg.model.name,
              "mask": cfg.mask.name, "dataset": cfg.dataset.name, "seed": cfg.seed, "images": len(batch),
              "precision": "bf16" if bf16 else "fp32", "unit": "tokens of the layer's own grid",
              "layers": locality.layers()}
    write_json(locality_path(run_dir), result)
    return result


def report(result: dict) -> str:
    """The printed form: one line per layer, its mean distance, per head, and uniform attention's."""
    lines = [f"{result['run']} ({result['checkpoint']}: {result['weights']}, "
             f"{epoch_label(result['epoch'], result.get('epochs'))}): mean attention "
             f"distance in tokens over {result['images']} {result['dataset']} test images"]
    for layer in result["layers"]:
        heads = " ".join(f"{d:.2f}" for d in layer["heads"])
        lines.append(f"  {layer['layer']:<22} {layer['grid']}x{layer['grid']}  mean {layer['mean']:.2f}  "
                     f"(uniform {layer['uniform']:.2f})  heads {heads}")
    return "\n".join(lines)
