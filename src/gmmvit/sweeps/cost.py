"""GPU-hours a sweep's jobs still need: the recipe's length, the datasets' sizes, and a training
throughput per model, measured by the sweep's own runs where they have one (``make paper DRY=1``,
``make ablations DRY=1``)."""

from __future__ import annotations

import statistics

from omegaconf import OmegaConf

from gmmvit.catalog import CONF, TEST_SIZE, TRAIN_SIZE

# Training throughput on one GPU, img/s end to end through train() (bf16, compiled, GPU-resident
# data, the paper's augmentation, batch 128), until the sweep's own runs report theirs. MEASURED on an
# H200 (torch 2.11, compile=reduce-overhead, `python -m gmmvit.bench.gpu_check`, README "GPU"), the mean of
# mask none and gmm: ViT 21,505 / 20,037, Swin 16,997 / 14,635, CaiT 8,088 / 6,599. PiT: none
# measured (19,354), gmm scaled by the none:gmm ratio measured with step_graph (25,405 : 13,468).
# T2T is ASSUMED: ViT's figure scaled by the authors' 2-core CPU speed ratio (50 / 110).
# The 64px Tiny-ImageNet configurations keep the token count (the patch size doubles): same figure.
GPU_IMG_PER_S = {"vit": 20_800, "swin": 15_800, "cait": 7_300, "pit": 14_800, "t2t": 9_400}
GPU_RATE_SOURCE = {"vit": "measured, H200", "swin": "measured, H200", "cait": "measured, H200",
                   "pit": "measured none, H200", "t2t": "assumed"}
# No gain is applied for several runs sharing one GPU (runs_per_gpu): the only figures there were
# (x2.06 for 2, x3.71 for 4) summed each process's last-epoch img/s in processes that barely
# overlapped, so each measured the card nearly alone. Without MPS, kernels of different processes
# time-slice the device: packing fills only the gaps one run leaves (README "GPU figures").
# gmmvit.bench.packing measures it over a common window; an estimate may use only such a figure.
NO_PACKING = ("one run per GPU; runs_per_gpu shares a GPU by time slices and no packing gain measured over "
              "a common window is applied")
DEFAULT_IMG_PER_S = 5_000
EVAL_COST = 1 / 3  # a test image costs about a third of a training image (forward only)


def recipe_length() -> tuple[float, float]:
    recipe = OmegaConf.load(CONF / "recipe" / "paper.yaml")
    return float(recipe.epochs), float(recipe.passes_per_epoch)


def estimate(job: dict, m: dict | None, measured: dict, epochs: float, passes: float) -> float:
    """GPU-hours this job still needs."""
    total = float((m or {}).get("epochs") or epochs)
    done = len((m or {}).get("history", [])) if (m or {}).get("status") != "failed" else 0
    left = max(total - done, 0.0)
    rate = measured.get(job["model"]) or GPU_IMG_PER_S.get(job["model"], DEFAULT_IMG_PER_S)
    train_images = TRAIN_SIZE.get(job["dataset"], 50_000) * job.get("train_fraction", 1.0)
    images = train_images * passes + EVAL_COST * TEST_SIZE.get(job["dataset"], 10_000)
    return left * images / rate / 3600


def measured_rates(listed: list[dict], records: dict) -> dict[str, float]:
    """{model: median img/s} over the epochs the jobs' runs (``records``: metrics.json by run folder)
    have already recorded; models with none are left out."""
    measured = {}
    for model in {j["model"] for j in listed}:
        rates = [r["img_per_s"] for j in listed if j["model"] == model
                 for r in (records[str(j["dir"])] or {}).get("history", []) if r.get("img_per_s")]
        if rates:
            measured[model] = statistics.median(rates)
    return measured
