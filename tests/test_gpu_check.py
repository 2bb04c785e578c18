"""The GPU check (gmmvit.bench.gpu_check) works before a card is lent: its runs compose, and its
rehearsal on the CPU makes every call the GPU run makes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gmmvit.bench import compiled_grads, mfu
from gmmvit.bench.gpu_check import accuracy
from gmmvit.bench.gpu_scale import GPU, REHEARSAL, on_cpu
from gmmvit.catalog import REPO
from gmmvit.config.checks import check


def overrides_of(command: list[str]) -> list[str]:
    """A train.py command's overrides, a sweep's lists cut to their first value (compose takes one job)."""
    args = [a for a in command[2:] if a != "-m"]
    return [a if "," not in a else a.split(",")[0] for a in args]


@pytest.mark.parametrize("scale", [GPU, REHEARSAL], ids=["gpu", "rehearsal"])
def test_every_accuracy_run_of_the_gpu_check_composes(compose_config, tmp_path, scale):
    commands = [accuracy.accuracy_command(*run, tmp_path, scale) for run in accuracy.ACCURACY_RUNS]
    commands.append(accuracy.fused_accuracy_command(tmp_path, scale))
    for command in commands:
        cfg = compose_config(overrides_of(command), run_dir=tmp_path / "run", data_dir=tmp_path)
        check(cfg, machine=False)  # the ranges every launch checks first
        assert cfg.dataset.name == "fashion_mnist"


def test_a_rehearsal_replaces_only_the_settings_cuda_alone_has():
    assert [on_cpu("step_graph", v) for v in ("true", "auto", "false")] == ["auto", "auto", "false"]
    assert [on_cpu("compile", v) for v in ("true", "reduce-overhead", "auto", "false")] == [
        "false", "false", "auto", "false"]
    assert on_cpu("precision", "bf16") == "bf16"


def test_the_gpu_check_rehearses_its_phases_on_the_cpu(tmp_path):
    """Phase A's runs are the composes above; phase C's packed processes are tests/test_packing.py's."""
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run([sys.executable, "-m", "gmmvit.bench.gpu_check", "--rehearse", "--models", "vit",
                           "--phases", "b,d,e", "--peak-tflops", "0.001", "--fmnist", str(tmp_path / "unused"), "--out", str(out),
                           "--logs", str(tmp_path / "logs"), "--workdir", str(tmp_path / "work")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "REHEARSAL" in text and "failed" not in text and "error" not in text, text
    for section in ("### 2.", "### 2b.", "### 4.", "### 5."):
        assert section in text
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {r["kind"] for r in results["serial"]} == {"e2e", "data"}
    assert all("img_s" in r for r in results["serial"] + results["fused"])
    assert results["serial"][0]["profile_figures"]["steps"] == REHEARSAL.profile_steps
    assert set(results["rates"]) == {"vit"} and results["table_hours"] > 0
    assert set(results["fused_rates"]) == {"vit|2", "vit|4"}  # sizes cut at REHEARSAL.fused_members
    assert set(results["mfu"]) == {"vit"} and "- MFU of each model's best setting" in text


TINY_SWIN = ["model.embed_dim=24", "model.depths=[2,2]", "model.num_heads=[2,4]"]  # a shifted block per stage


def test_a_compiled_step_computes_the_eager_steps_loss_and_gradients():
    report = compiled_grads.compare("swin", "gmm", "cpu", batch=4, backend="aot_eager", overrides=TINY_SWIN)
    assert report["loss"]["compiled_fp32"] == pytest.approx(report["loss"]["eager_fp32"], rel=1e-6)
    assert report["grad_error"]["compiled_fp32"]["max"] < 1e-5 and not report["grad_error"]["compiled_fp32"]["missing"]
    assert report["mask_grad_error"]["compiled_bf16"]["median"] > 0  # the mask's own parameters are compared
    assert report["verdict"].startswith("compiled = eager")


def test_a_compiled_step_farther_from_fp32_than_bf16_is_reported_as_differing():
    def error(median, worst):
        return {"median": median, "max": worst, "worst": "layers.0.attn.mask.sigma", "missing": []}

    errors = {"eager_bf16": error(1e-2, 5e-2), "compiled_fp32": error(1e-6, 1e-5), "compiled_bf16": error(3e-2, 2e-1)}
    assert compiled_grads.verdict(errors).startswith("compiled differs from eager: compiled_bf16 median 3.0e-02")
    errors["compiled_bf16"] = error(1.5e-2, 6e-2)
    assert compiled_grads.verdict(errors).startswith("compiled = eager")


def test_mfu_is_six_times_the_macs_per_image_over_the_cards_dense_bf16_peak():
    assert mfu.mfu(img_s=1000.0, macs=10**9, peak=989.0) == pytest.approx(1000 * 6e9 / 989e12)
    assert [mfu.peak_tflops(c) for c in ("NVIDIA H200", "NVIDIA GH200 480GB", "NVIDIA H100 PCIe",
                                         "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "none")] == [
        989.0, 989.0, 756.0, 989.0, 312.0, None]



def test_a_parameter_the_compiled_step_gives_no_gradient_is_reported_not_a_crash():
    import torch

    grad = torch.ones(3)
    report = compiled_grads.distance({"blocks.0.attn.qkv.weight": grad},
                                     {"blocks.0.attn.qkv.weight": grad, "blocks.0.attn.mask.sigma": grad})
    assert report["missing"] == ["blocks.0.attn.mask.sigma"] and report["max"] == float("inf")
    assert compiled_grads.distance({}, {"blocks.0.attn.mask.sigma": grad}, only=".mask.")["worst"] == (
        "blocks.0.attn.mask.sigma")
