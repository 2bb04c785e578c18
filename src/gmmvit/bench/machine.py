"""The machine a benchmark runs on, and the config it benchmarks."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import torch

from gmmvit.catalog import CONF, MODELS
from gmmvit.config.compose import compose_config


def compose(overrides: Sequence[str] = ()):
    """The config ``python src/train.py logger=none <overrides>`` would run."""
    return compose_config(["logger=none", *overrides])


def available(names: Sequence[str], group: str) -> list[str]:
    return [n for n in names if (CONF / group / f"{n}.yaml").exists()]


def all_models() -> list[str]:
    extra = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem not in MODELS)
    return available(MODELS, "model") + extra


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device, threads: int) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    return (f"CPU {cpu_model()} ({os.cpu_count()} logical cores), torch threads {threads}; "
            f"GPU {gpu}; torch {torch.__version__}{cuda}; Python {platform.python_version()}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
