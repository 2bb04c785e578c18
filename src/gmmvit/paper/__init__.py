"""The paper's figures (``README.md`` here says where each comes from), read from the CSVs beside
this file so that the code and the tests share one copy."""

from __future__ import annotations

import csv
import io
from importlib import resources


def rows(name: str) -> list[dict]:
    """The rows of ``<name>.csv`` as dicts of strings."""
    text = resources.files(__name__).joinpath(f"{name}.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def results() -> dict:
    """{(model, mask): {"cifar10": top1, ..., "params_M": .., "macs_M": .., "depth": ..}}"""
    return {(r["model"], r["mask"]): {k: float(v) for k, v in r.items() if k not in ("model", "mask")}
            for r in rows("results")}


def reference_params() -> list[dict]:
    """One row per model x mask x dataset of the authors' models: params, thop_macs_M (strings)."""
    return rows("reference_params")


def authors_step_speed() -> dict:
    """{model: {mask: img/s}} of the authors' training step on 2 CPU threads."""
    out: dict = {}
    for r in rows("authors_step_speed"):
        out.setdefault(r["model"], {})[r["mask"]] = int(r["img_per_s"])
    return out


def authors_loader_speed() -> dict:
    """{pipeline: img/s} of one core augmenting 32x32 images."""
    return {r["pipeline"]: int(r["img_per_s"]) for r in rows("authors_loader_speed")}


def recipe() -> dict:
    """{config key: value} of the paper's training recipe."""
    return {r["key"]: float(r["value"]) for r in rows("recipe")}


__all__ = ["rows", "results", "reference_params", "authors_step_speed", "authors_loader_speed", "recipe"]
