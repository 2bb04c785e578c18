"""``make locality``: how local the learned attention is, per layer and head, for a run or a sweep.

    python -m gmmvit.config.locality PATH [--ckpt best|last] [--images N] [KEY=VALUE ...]

PATH is a run folder (its ``analysis/attention_locality.json``, printed) or a sweep folder (every
finished run measured, then the sweep's ``attention_locality.png`` and ``.csv``; the runs are chosen
and their overrides checked as ``make eval SWEEP=`` does, ``gmmvit.config.evaluation.checked_runs``). The runs' own
recorded configs build the networks; the overrides are ``make eval``'s (device, precision, threads;
anything that would change the network is refused in one line). The measure is
``gmmvit.nn.locality``, the run's JSON ``gmmvit.run.locality``, the figure ``gmmvit.sweeps.locality``.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from gmmvit.config.evaluation import WHERE_RUNS_ARE, checked_runs, eval_config
from gmmvit.config.reporting import fail, guarded
from gmmvit.errors import CheckpointError, CommandLine, ConfigError, DatasetUnavailable, one_line_errors
from gmmvit.run.evaluate import CHECKPOINTS
from gmmvit.run.locality import DEFAULT_IMAGES, locality_path, measure_run, report
from gmmvit.sweeps import locality as sweep_locality
from gmmvit.sweeps.folders import check_target, is_run_dir

COMMAND = "make locality"  # what its refusals name
UNUSED = {  # overrides make eval acts on that the analysis would take and ignore
    "limit_test": "measures the first --images test images; give --images N instead",
    "attention": "reads the attention maps on the explicit path, whatever attention= says; drop it"}


def refuse_unused(overrides) -> None:
    for text in overrides:
        key = str(text).lstrip("+~").partition("=")[0]
        if key in UNUSED:
            raise ConfigError(f"{text}: {COMMAND} {UNUSED[key]}")


def measure(path: Path, checkpoint: str = "best", images: int = DEFAULT_IMAGES, overrides=()) -> list[Path]:
    """Measure the run at ``path``, or every finished run under it and draw each sweep's figure;
    returns the figures written."""
    path = Path(path)
    check_target(path, WHERE_RUNS_ARE)
    refuse_unused(overrides)
    if is_run_dir(path):
        cfg = eval_config(path, list(overrides), COMMAND)
        print(report(measure_run(cfg, path, checkpoint, images)), flush=True)
        print(f"locality: {locality_path(path)}", flush=True)
        return []
    def skip(run_dir: Path, why: str) -> None:
        print(f"locality: {run_dir} skipped: {why}", flush=True)

    sweeps = defaultdict(list)
    for run, cfg in checked_runs(path, list(overrides), COMMAND, skip):
        try:
            result = measure_run(cfg, run.path, checkpoint, images)
        except (CheckpointError, DatasetUnavailable) as exc:  # this run's own fault
            skip(run.path, str(exc))
            continue
        sweeps[run.path.parent].append((cfg, run.path, result))
        print(report(result), flush=True)
    if not sweeps:
        raise ConfigError(f"no finished run under {path}: train the sweep first")
    figures = []
    for sweep_dir, measured in sorted(sweeps.items()):
        figure, _ = sweep_locality.sweep_figure(sweep_dir, [run_dir for _, run_dir, _ in measured])
        for cfg, run_dir, result in measured:
            sweep_locality.log_to_wandb(cfg, run_dir, result, figure)
        print(f"locality: {figure} ({len(measured)} runs)", flush=True)
        figures.append(figure)
    return figures


@one_line_errors
def main(argv=None) -> int:
    ap = CommandLine(prog="python -m gmmvit.config.locality", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, nargs="?", help="a run folder or a sweep folder, multirun/<sweep>[/<run>]")
    ap.add_argument("--ckpt", choices=CHECKPOINTS, default="best", help="best.pt (default) or the last checkpoint")
    ap.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                    help=f"the first N test images are the batch (default {DEFAULT_IMAGES})")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE as make eval takes them, e.g. device=cpu threads=2")
    args = ap.parse_intermixed_args(argv)  # `make` puts the overrides after --ckpt
    if args.path is None:
        fail("make locality needs SWEEP=multirun/<sweep> or RUN=multirun/<sweep>/<run>")
    if args.images < 1:
        fail(f"--images must be at least 1, got {args.images}")
    guarded(measure, args.path, args.ckpt, args.images, args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
