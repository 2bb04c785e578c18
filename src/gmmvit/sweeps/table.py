"""``make table``: a sweep's results as the paper's table, from the run folders alone (no W&B).

    python -m gmmvit.sweeps.table [SWEEP_DIR ...] [--select test|val|final[,...]] [--stale-after SECONDS]

Every run folder (one holding ``metrics.json`` and/or ``config.yaml``) under the given
folders is read; runs are grouped by the folder that holds them (``multirun/<sweep>/<run>``),
and each sweep gets its table, printed and written into the sweep folder as ``table.md``,
``table.csv``, ``table.tex`` (booktabs) and ``table.png`` (the mask gains with 95% intervals).

Rows are model x mask x whatever else the sweep varied (any setting that differs between runs of
one model/mask/dataset cell, shown as ``[key=value]``: ``model.pool``, ``mask.placement``,
``dataset.train_fraction``, ...), columns the datasets, then params and MACs. A cell is the mean +-
sample std over seeds of the best test top-1 (the paper's protocol; ``--select val``: the test top-1
at the best epoch on the held-out validation split of ``dataset.val_fraction``, the clean protocol;
``--select final`` or ``--final``: last-epoch top-1), with n. Without ``--select``, a sweep whose runs
hold out a validation split gets both protocols, the paper's then the clean one. Under each
model, every row's gain over the sweep's reference row, paired by seed, with a 95% t-interval when
>= 2 seeds pair; a gain whose interval contains zero is marked ``n.s.`` (not significant).

The reference row is the authors' setting, named by the runs' ``gain_reference`` (``key=value``
settings; default ``mask=none``, so the paper's grid prints the paper's layout: each mask against
``none``). Settings it does not name pair within their own value: the data-fraction sweep
(``[mask=none]``) pairs each mask with ``none`` at the same fraction, the placement sweep
(``[mask.placement=pre]``) pairs ``post`` with ``pre`` of the same mask.
Where the paper has the model/mask/dataset, its number and our difference to it follow.
Runs that are missing, running, failed (with the reason) or stopped are marked and listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from gmmvit.errors import CommandLine, one_line_errors
from gmmvit.sweeps import render
from gmmvit.sweeps.cells import SELECTIONS, SweepTable
from gmmvit.sweeps.folders import Run, collect_sweeps, read_whole

SUFFIXES = (".md", ".csv", ".tex", ".png")


def outputs(stem: str) -> list[str]:
    return [stem + suffix for suffix in SUFFIXES]


OUTPUTS = tuple(outputs("table"))
DEFAULT_SELECTION = "test"


def stem_of(select: str) -> str:
    """The files a selection's table is written to: ``table.*`` is only ever the paper's selection,
    whatever flags asked for the others, so another never overwrites it."""
    return "table" if select == DEFAULT_SELECTION else f"table_{select}"


def selections(asked: Optional[str], runs: list[Run]) -> list[str]:
    """The selections to print: those asked for, else the paper's, then the clean one where runs have it."""
    if asked:
        return asked.split(",")
    return [DEFAULT_SELECTION] + (["val"] if any(r.at_best_val is not None for r in runs) else [])


def build(folder: Path, runs: list[Run], select: str = DEFAULT_SELECTION,
          write: bool = True) -> tuple[str, Optional[SweepTable]]:
    """The printed text of one sweep; with ``write``, its four files (``stem_of(select)``) in ``folder``."""
    t = SweepTable(Path(folder), runs, select)
    if not any(r.state == "finished" for r in runs):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(t.counts().items()))
        listed = "".join(f"- {line}\n" for line in t.notices() if line.startswith("unreadable: "))
        return f"{t.name} ({folder}): nothing finished yet ({counts}).\n{listed}", None
    if select == "val" and not any(r.at_best_val is not None for r in runs):
        return (f"{t.name} ({folder}): --select val has nothing to show, its runs hold no validation split; "
                "train them with one held out, e.g. dataset.val_fraction=0.1\n"), None
    text = render.render_markdown(t)
    if write:
        md, csv, tex, png = (t.folder / name for name in outputs(stem_of(select)))
        md.write_text(text)
        render.write_csv(t, csv)
        tex.write_text(render.render_tex(t))
        render.render_png(t, png)
    return text, t


@one_line_errors
def main(argv=None) -> int:
    ap = CommandLine(prog="python -m gmmvit.sweeps.table", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="*", default=["multirun"], help="sweep folders, or folders of sweeps")
    selection = ap.add_mutually_exclusive_group()  # `--final --select val` would keep only the last
    selection.add_argument("--select", type=_selection, default=None, metavar="test|val|final[,...]",
                    help="which epoch a cell is: best on test (the paper's), best on the validation split "
                         "(dataset.val_fraction), final; several, comma-separated, print one table each "
                         "(default: test, and val where the runs hold out a validation split)")
    selection.add_argument("--final", action="store_const", const="final", dest="select", help="= --select final")
    ap.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                    help="a 'running' run silent this long is reported stopped "
                         "(default: 3 of its longest epochs, at least 10 min)")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.sweeps]
    sweeps = collect_sweeps(paths, args.stale_after)
    for folder, runs in sweeps.items():
        whole = read_whole(folder, paths)
        for select in selections(args.select, runs):
            text, t = build(folder, runs, select, write=whole)
            print(text, flush=True)
            if t is None:
                continue
            if whole:
                print(f"(written: {', '.join(str(folder / o) for o in outputs(stem_of(select)))})\n", flush=True)
            else:
                named = "1 run folder of {} was" if len(runs) == 1 else f"{len(runs)} run folders of {{}} were"
                print(f"(not written: {named.format(folder)} named, not the sweep; "
                      f"make table SWEEP={folder} writes its {stem_of(select)}.*)\n", flush=True)
    return 0


def _selection(text: str) -> str:
    unknown = [s for s in text.split(",") if s not in SELECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)}: --select takes {', '.join(SELECTIONS)}, "
                                         "comma-separated")
    return text


if __name__ == "__main__":
    sys.exit(main())
