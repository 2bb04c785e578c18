"""A sweep's table in its four forms: markdown (printed), CSV, LaTeX (booktabs) and the gains plot."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from gmmvit.sweeps.folders import variant_text
from gmmvit.sweeps.cells import Cell, Gain, SweepTable

FOOTER = ("Cells: mean ± sample std over seeds of the {what}, n = finished seeds. {selection} "
          "Gain rows (Δ row − reference row; reference: {reference}): paired by seed, mean difference "
          "with its 95% t-interval [low, high] where at least two seeds pair; n.s. = the interval "
          "contains zero (not significant at 95%). [paper p, Δ d]: the paper's number "
          "(best test top-1, 100 epochs of 3 passes on the full dataset) and ours minus it.")
SELECT_BEST = ("As in the paper, the epoch is selected on the test set and the cell is the best test top-1 "
               "over all epochs (a validation split the runs hold out is not used: `--select val` selects on "
               "it), an optimistic estimate: `--final` gives the last epoch's accuracy.")
SELECT_FINAL = ("`--select final`: last-epoch accuracy, no selection on the test set; the paper's numbers "
                "beside it are best-epoch numbers (selected on the test set).")
SELECT_VAL = ("`--select val` (the clean protocol): the epoch is selected on a validation split held out of "
              "the training set (`dataset.val_fraction`, the same images for every model and mask of a seed) "
              "and the cell is the test top-1 at that epoch; runs without a validation split have no cell. "
              "The paper's numbers beside it are selected on the test set.")
# per selection: what a cell holds (title), its footnote, the CSV's metric, the LaTeX caption's words
SELECTIONS = {"test": ("best test top-1 (%)", SELECT_BEST, "best_top1", "best"),
              "val": ("test top-1 at the best validation epoch (%)", SELECT_VAL, "test_top1_at_best_val",
                      "best-validation-epoch"),
              "final": ("last-epoch test top-1 (%)", SELECT_FINAL, "final_top1", "last-epoch")}


def fmt_count(x: Optional[float]) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1e9:
        return f"{x / 1e9:.3g}G"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.3g}K"
    return f"{x:.0f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def cell_text(c: Optional[Cell]) -> str:
    if c is None:
        return "–"
    parts = []
    if c.n:
        parts.append(f"{c.mean:.2f} ± {c.std:.2f} (n={c.n})" if c.std is not None else f"{c.mean:.2f} (n=1)")
    notes = []
    if c.running:
        notes.append(f"{len(c.running)} running")
    if c.stopped:
        notes.append(f"{len(c.stopped)} stopped")
    if c.failed:
        notes.append(f"{len(c.failed)} failed")
    if not c.n and not notes:
        notes.append("missing")                  # no run at all in this cell
    elif c.seeds_missing:
        notes.append("seed " + ",".join(str(s) for s in c.seeds_missing) + " missing")
    if notes:
        parts.append(f"({'; '.join(notes)})" if c.n else "; ".join(notes))
    if c.paper is not None:
        parts.append(f"[paper {c.paper:.2f}" + (f", Δ {_signed(c.delta)}]" if c.delta is not None else "]"))
    return " ".join(parts)


def gain_text(g: Optional[Gain]) -> str:
    if g is None:
        return "–"
    if g.n == 0:
        text = "no paired seeds"
    elif g.low is None:
        text = (f"{_signed(g.mean)} (n=1 pair, no interval)" if g.n == 1
                else f"{_signed(g.mean)} (n={g.n} pairs, all equal: no interval)")
    else:
        text = f"{_signed(g.mean)} [{_signed(g.low)}, {_signed(g.high)}] (n={g.n})"
    if g.paper is not None:
        text += f" [paper {_signed(g.paper)}" + (f", Δ {_signed(g.delta)}]" if g.delta is not None else "]")
    if g.significant is False:
        text += " n.s."
    return text


def table_rows(t: SweepTable):
    """(kind, model, mask label, {dataset: text}, params text, macs text) in display order."""
    for model in t.models:
        for mask, variant in t.rows[model]:
            params, macs = t.params_macs(model, mask, variant)
            pp = t.paper.get((model, mask)) if not variant else None
            # the paper's size only beside a model of the paper's size (not a shrunk demo model)
            if pp and not (params and 0.5 < params / (pp["params_M"] * 1e6) < 2):
                pp = None
            ptxt = fmt_count(params) + (f" [paper {pp['params_M']}M]" if pp else "")
            mtxt = fmt_count(macs) + (f" [paper {pp['macs_M']}M]" if pp else "")
            yield ("acc", model, mask + variant_text(variant), variant,
                   {d: t.cell(model, mask, variant, d) for d in t.datasets}, ptxt, mtxt)
        for mask, variant in t.rows[model]:
            ref = t.reference_row(model, mask, variant)
            if ref is None or ref == (mask, variant):
                continue
            p1, _ = t.params_macs(model, mask, variant)
            p0, _ = t.params_macs(model, *ref)
            dparams = f"{p1 - p0:+d}" if p1 is not None and p0 is not None else "–"
            yield ("gain", model, f"Δ {mask}{variant_text(variant)} − {ref[0]}{variant_text(ref[1])}", variant,
                   {d: t.gain(model, mask, variant, d) for d in t.datasets}, dparams, "")


def render_markdown(t: SweepTable) -> str:
    what, selection, _, _ = SELECTIONS[t.select]
    out = [f"## {t.name}: {what}  ({t.folder})", ""]
    header = ["model", "mask"] + t.datasets + ["params", "MACs"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for kind, model, mask, _, cells, ptxt, mtxt in table_rows(t):
        texts = [cell_text(cells[d]) if kind == "acc" else gain_text(cells[d]) for d in t.datasets]
        out.append("| " + " | ".join([model if kind == "acc" else "", mask] + texts + [ptxt, mtxt]) + " |")
    counts = t.counts()
    out += ["", "Runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "."]
    warning = t.reference_warning()
    if warning:
        out += ["", warning]
    notices = t.notices()
    if notices:
        out += ["", "Not in the cells:"] + [f"- {line}" for line in notices]
    out += ["", "Environments (finished runs):"] + [f"- {label}: {n} run{'s' * (n != 1)}"
                                                    for label, n in t.environments().items()]
    out += [f"- warning: {line}" for line in t.mixed_cells()]
    out += ["", FOOTER.format(what=what.replace(" (%)", ""), selection=selection,
                              reference=", ".join(t.reference_items))]
    return "\n".join(out) + "\n"


def write_csv(t: SweepTable, path: Path) -> None:
    cols = ["sweep", "model", "mask", "variant", "dataset", "row", "metric", "mean", "std", "n", "ci95_low",
            "ci95_high", "seeds", "missing_seeds", "running", "stopped", "failed", "paper", "delta_to_paper",
            "params", "macs", "reference", "significant"]
    metric = SELECTIONS[t.select][2]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for model in t.models:
            for mask, variant in t.rows[model]:
                params, macs = t.params_macs(model, mask, variant)
                for d in t.datasets:
                    c = t.cell(model, mask, variant, d)
                    if c is None:
                        continue
                    w.writerow([t.name, model, mask, variant_text(variant).strip(" []"), d, "accuracy", metric,
                                c.mean, c.std, c.n, None, None, " ".join(str(s) for s, _ in c.values),
                                " ".join(map(str, c.seeds_missing)), len(c.running), len(c.stopped),
                                len(c.failed), c.paper, c.delta, params, macs, None, None])
                    g = t.gain(model, mask, variant, d)
                    if g is not None:
                        ref = t.reference_row(model, mask, variant)
                        kind = "gain_vs_none" if ref == ("none", tuple(
                            p for p in variant if not p[0].startswith("mask."))) else "gain_vs_reference"
                        w.writerow([t.name, model, mask, variant_text(variant).strip(" []"), d, kind,
                                    metric, g.mean, None, g.n, g.low, g.high, " ".join(map(str, g.seeds)),
                                    None, None, None, None, g.paper, g.delta, None, None,
                                    f"{ref[0]}{variant_text(ref[1])}", g.significant])


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("Δ", r"$\Delta$"), ("−", "--"), ("±", r"$\pm$")):
        s = s.replace(a, b)
    return s


def render_tex(t: SweepTable) -> str:
    what = SELECTIONS[t.select][3]
    lines = [r"% generated by python -m gmmvit.sweeps.table; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{ll" + "r" * (len(t.datasets) + 2) + "}", r"\toprule",
             " & ".join(["Model", "Mask"] + [_tex(d) for d in t.datasets] + ["Params", "MACs"]) + r" \\",
             r"\midrule"]
    previous = None
    for kind, model, mask, _, cells, ptxt, mtxt in table_rows(t):
        if previous is not None and model != previous:
            lines.append(r"\midrule")
        previous = model
        texts = []
        for d in t.datasets:
            c = cells[d]
            if kind == "acc":
                if c is None:
                    texts.append("--")
                elif c.n:
                    s = f"{c.mean:.2f}" + (rf"$\pm${c.std:.2f}" if c.std is not None else "")
                    s += rf"\,{{\scriptsize ({c.n})}}"
                    if c.paper is not None:
                        s += rf" {{\scriptsize[{c.paper:.2f}]}}"
                    texts.append(s)
                else:
                    state = ("running" if c.running else "failed" if c.failed
                             else "stopped" if c.stopped else "missing")
                    texts.append(r"\textit{" + state + "}")
            else:
                if c is None or c.n == 0:
                    texts.append("--")
                else:
                    s = f"{c.mean:+.2f}"
                    if c.low is not None:
                        s += rf"\,{{\scriptsize[{c.low:+.2f}, {c.high:+.2f}]}}"
                    s += rf"\,{{\scriptsize ({c.n})}}"        # one pair or equal pairs: no interval, no n.s.
                    if c.paper is not None:
                        s += rf" {{\scriptsize(paper {c.paper:+.2f})}}"
                    if c.significant is False:
                        s += r" {\scriptsize n.s.}"
                    texts.append(r"\textit{" + s + "}")
        label = _tex(model) if kind == "acc" else ""
        lines.append(" & ".join([label, _tex(mask)] + texts + [_tex(ptxt), _tex(mtxt)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{" + _tex(f"{t.name}: {what} test top-1 (%), mean ± std over seeds (n); "
                                  "[paper]; gain rows: paired difference to the reference row "
                                  f"({', '.join(t.reference_items)}) with 95% t-interval, n.s. = contains 0, "
                                  "(n) = seeds paired, no interval from one pair or from pairs all equal. "
                                  + {"test": "Best epoch selected on the test set, as in the paper.",
                                     "val": "Epoch selected on a validation split held out of the training set; "
                                            "test top-1 at that epoch.",
                                     "final": "Last epoch."}[t.select]) + "}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_png(t: SweepTable, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []       # (label, model, {dataset: Gain})
    for kind, model, mask, variant, cells, _, _ in table_rows(t):
        if kind == "gain":
            series.append((mask.split(" − ")[0].replace("Δ ", ""), model, cells))
    plot_gains = any(g is not None and g.n for _, _, cells in series for g in cells.values())
    if not plot_gains:    # no baseline to pair with: plot the accuracies instead
        series = []
        for kind, model, mask, variant, cells, _, _ in table_rows(t):
            if kind == "acc":
                series.append((mask, model, cells))
    has = lambda g: g is not None and g.n > 0  # noqa: E731
    datasets = [d for d in t.datasets if any(has(cells.get(d)) for _, _, cells in series)] or t.datasets[:1]
    ncols = len(datasets)
    fig, axes = plt.subplots(1, ncols, figsize=(max(4.5, 3.2 * ncols), 3.8), squeeze=False)
    labels = sorted({lab for lab, _, cells in series if any(has(g) for g in cells.values())})
    colors = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    width = min(0.35, 0.8 / max(1, len(labels)))
    for ax, d in zip(axes[0], datasets):
        for lab, model, cells in series:
            g = cells.get(d)
            if not has(g):
                continue
            x = t.models.index(model) + (labels.index(lab) - (len(labels) - 1) / 2) * width
            if plot_gains:
                err = None if g.low is None else [[g.mean - g.low], [g.high - g.mean]]
                # hatched: one pair or equal pairs, no interval (a bar without whiskers would read as a sure gain)
                ax.bar(x, g.mean, width, color=colors[lab], yerr=err, capsize=3,
                       hatch="//" if err is None else None, edgecolor="white" if err is None else None)
                if g.paper is not None:
                    ax.plot(x, g.paper, "kx", ms=7)
            else:
                ax.bar(x, g.mean, width, color=colors[lab], yerr=g.std or None, capsize=3)
                if g.paper is not None:
                    ax.plot(x, g.paper, "kx", ms=7)
        ax.set_xlim(-0.6, len(t.models) - 0.4)
        ax.set_xticks(range(len(t.models)))
        ax.set_xticklabels(t.models)
        ax.set_title(d, fontsize=9)
        if plot_gains:
            ax.axhline(0, color="grey", lw=0.8)
    axes[0][0].set_ylabel("gain over the reference\n(top-1 points, 95% CI)" if plot_gains else "top-1 (%) ± std")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[lab]) for lab in labels]
    handles.append(plt.Line2D([], [], color="k", marker="x", ls=""))
    names = labels + ["paper"]
    if plot_gains and any(has(g) and g.low is None for _, _, cells in series for g in cells.values()):
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="lightgrey", hatch="//", edgecolor="white"))
        names.append("one pair or equal pairs: no interval")
    axes[0][-1].legend(handles, names, loc="best", fontsize=7)
    fig.suptitle(f"{t.name}: {SELECTIONS[t.select][3]} test top-1"
                 + (f"\ngain over {', '.join(t.reference_items)}, paired by seed" if plot_gains else ""), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=100)
    plt.close(fig)
