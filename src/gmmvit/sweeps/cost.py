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
# Fused training (``fused=G``): {(model, G): all members' img/s together on one GPU}, from the GPU
# check's fused phase (``python -m gmmvit.bench.gpu_check``, phase E) only. None measured yet: an
# estimate prints no fused figure until one is (README "Fused runs").
FUSED_IMG_PER_S: dict[tuple[str, int], float] = {}
DEFAULT_IMG_PER_S = 5_000
EVAL_COST = 1 / 3  # a test image costs about a third of a training image (forward only)


def recipe_length() -> tuple[float, float]:
    recipe = OmegaConf.load(CONF / "recipe" / "paper.yaml")
    return float(recipe.epochs), float(recipe.passes_per_epoch)


def epochs_left(m: dict | None, epochs: float) -> float:
    """Epochs a job still trains (``m``: its metrics.json, None before it starts); a failed run starts over."""
    total = float((m or {}).get("epochs") or epochs)
    done = len((m or {}).get("history", [])) if (m or {}).get("status") != "failed" else 0
    return max(total - done, 0.0)


def estimate(job: dict, m: dict | None, measured: dict, epochs: float, passes: float) -> float:
    """GPU-hours this job still needs."""
    rate = measured.get(job["model"]) or GPU_IMG_PER_S.get(job["model"], DEFAULT_IMG_PER_S)
    return job_images(job, epochs_left(m, epochs), passes) / rate / 3600


def job_images(job: dict, epochs_left: float, passes: float) -> float:
    """Images a job still trains and evaluates (a test image counted at ``EVAL_COST``)."""
    train_images = TRAIN_SIZE.get(job["dataset"], 50_000) * job.get("train_fraction", 1.0)
    return epochs_left * (train_images * passes + EVAL_COST * TEST_SIZE.get(job["dataset"], 10_000))


def fused_hours(groups: list[list[dict]], lefts: list[list[float]], epochs: float, passes: float,
                rates: dict = FUSED_IMG_PER_S) -> tuple[float | None, list[tuple[str, int]]]:
    """GPU-hours of fused groups (each a list of jobs, ``lefts`` their epochs left): a group trains
    as long as its longest member, at the measured rate of its model and size, all members' images
    together. (None, the (model, G) without a measured rate) when any group has none."""
    missing = sorted({(g[0]["model"], len(g)) for g in groups if len(g) > 1 and (g[0]["model"], len(g)) not in rates})
    if missing:
        return None, missing
    hours = 0.0
    for group, left in zip(groups, lefts):
        if len(group) > 1:
            hours += len(group) * job_images(group[0], max(left), passes) / rates[(group[0]["model"], len(group))] / 3600
        else:
            hours += job_images(group[0], left[0], passes) / GPU_IMG_PER_S.get(group[0]["model"], DEFAULT_IMG_PER_S) / 3600
    return hours, []


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
