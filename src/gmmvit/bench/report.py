"""The benchmark's markdown report (command and machine included), and reading its tables back."""

from __future__ import annotations

import math
from typing import Sequence

from gmmvit import paper

# the authors' measured figures (gmmvit/paper/README.md): their training step on 2 CPU threads, and
# one core augmenting 32x32 images
AUTHORS_STEP = paper.authors_step_speed()
AUTHORS_LOADER = paper.authors_loader_speed()


def fmt(x, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def error_cell(error: str) -> str:
    """An error as one table cell: its first line (an exception's message may run over many), no column bars."""
    return (error.strip().splitlines() or ["-"])[0].replace("|", "/")[:80]


def table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def step_rows(results: list[dict]) -> list[list]:
    """STEP_HEADER rows, plus SIDE_BY_SIDE_HEADER cells where the authors' code was timed alongside."""
    base = {r["model"]: r for r in results if r["mask"] == "none" and "img_s" in r}
    side_by_side = any("authors_img_s" in r for r in results)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["model"], r["mask"], "error", "-", "-", "-", "-", error_cell(r["error"])]
                        + ["-"] * (len(SIDE_BY_SIDE_HEADER) if side_by_side else 0))
            continue
        b = base.get(r["model"])
        overhead = (r["step_ms"] / b["step_ms"] - 1) * 100 if b and r["mask"] != "none" else None
        authors = AUTHORS_STEP.get(r["model"], {})
        a = authors.get(r["mask"])
        a_over = (authors["none"] / a - 1) * 100 if a and r["mask"] != "none" and "none" in authors else None
        row = [r["model"], r["mask"], fmt(r["img_s"], 1), fmt(r["step_ms"], 1),
               "-" if overhead is None else f"{overhead:+.1f}%", fmt(a),
               "-" if a_over is None else f"{a_over:+.1f}%", f"{r['params']:,}"]
        if side_by_side:
            theirs = r.get("authors_img_s")
            theirs_none = (b or {}).get("authors_img_s")
            their_over = (theirs_none / theirs - 1) * 100 if theirs and theirs_none and r["mask"] != "none" else None
            row += [fmt(theirs, 1), "-" if their_over is None else f"{their_over:+.1f}%",
                    "-" if not theirs else f"{r['img_s'] / theirs:.2f}x"]
        rows.append(row)
    return rows


STEP_HEADER = ["model", "mask", "img/s", "step ms", "mask overhead", "authors img/s (2-core CPU)",
               "authors overhead", "params"]
SIDE_BY_SIDE_HEADER = ["authors img/s, here, interleaved", "their mask overhead, here", "ours / theirs"]
LOADER_HEADER = ["dataset", "image", "PIL per-image img/s/core", "tensor batch, per-image AA img/s/core",
                 "the same, ops=torchvision img/s/core", "tensor batch, v2 AA per chunk img/s/core",
                 "authors img/s/core"]
EPOCH_HEADER = ["model", "mask", "images/epoch", "img/s (last epoch)", "epoch s", "first epoch s",
                "compile", "attention", "data on GPU"]


def render(command: str, machine_line: str, settings: str, steps: list[dict], loaders: list[dict],
           epochs: list[dict], notes: Sequence[str] = (), fused: Sequence[dict] = ()) -> str:
    out = ["## gmmvit bench", "", f"- command: `{command}`", f"- machine: {machine_line}",
           f"- settings: {settings}", ""]
    if steps:
        header = STEP_HEADER + (SIDE_BY_SIDE_HEADER if any("authors_img_s" in r for r in steps) else [])
        out += ["### Train step (img/s)", ""] + table(header, step_rows(steps)) + [""]
    if loaders:
        rows = []
        for r in loaders:
            if "error" in r:
                rows.append([r["dataset"], "-", "error", "-", "-", "-", error_cell(r["error"])])
                continue
            authors = (f"{AUTHORS_LOADER['hand-written']:,} hand-written / {AUTHORS_LOADER['torchvision']:,} "
                       "torchvision" if r["dataset"].startswith("cifar") else "-")
            rows.append([r["dataset"], r["image"], fmt(r["pil"]), fmt(r["tensor_sample"]),
                         fmt(r["tensor_sample_torchvision"]), fmt(r["tensor_batch"]), authors])
        out += ["### Loader: training augmentation, one process, one thread", ""]
        out += table(LOADER_HEADER, rows) + [""]
        out += ["PIL per-image = `data.build_transforms` (the DataLoader path). Tensor batch = "
                "`data.batched.BatchAugment` on calls of 1,024 uint8 images (as the training loader makes them), here on the CPU; "
                "both with the recipe's `recipe.aug.ops` (the authors' ops by default); \"the same, ops=torchvision\" "
                "is the batched path with torchvision's ops (as before that key), timed in turn with it. Per-image AA "
                "draws one AutoAugment sub-policy per image (faithful, what training runs); v2 AA per chunk calls "
                "`torchvision.transforms.v2.AutoAugment`, which applies ONE sub-policy to each whole "
                "call (chunks of 16 images).", ""]
    if epochs:
        rows = []
        for r in epochs:
            if "error" in r:
                rows.append([r["model"], r["mask"], "-", "error", "-", "-", "-", "-", error_cell(r["error"])])
                continue
            rows.append([r["model"], r["mask"], f"{r['images']:,}", fmt(r["img_s"]), fmt(r["epoch_s"], 1),
                         fmt(r["first_epoch_s"], 1), r["compile"], r["attention"], r["data_on_gpu"]])
        out += ["### End-to-end training epoch on the GPU (train() on synthetic CIFAR-sized data)", ""]
        out += table(EPOCH_HEADER, rows) + [""]
    if fused:
        from gmmvit.bench.fused_rate import FUSED_HEADER

        rows = [[r["model"], r["mask"], r["members"], fmt(r.get("img_s"), 1), fmt(r.get("member_img_s"), 1),
                 fmt(r.get("step_ms"), 1), fmt(r.get("peak_mib")), r.get("compiled", "-")] if "error" not in r else
                [r["model"], r["mask"], r["members"], "error", "-", "-", "-", error_cell(r["error"])] for r in fused]
        out += ["### Fused runs: G members of one model trained as one (gmmvit.run.fused, explicit attention)", ""]
        out += table(FUSED_HEADER, rows) + ["", "Members at seeds 0..G-1, each its own batch; img/s, all members "
                                            "= G x batch x steps over one window of the timed steps (a mean, not "
                                            "the step table's median); step ms = that window / steps.", ""]
    out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


def parse_markdown_table(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the first table in ``text`` whose first column is ``first_header``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] == first_header:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return cells, rows
    raise ValueError(f"no table starting with {first_header!r}")
