"""``make eval``: a trained run, or every finished run of a sweep, evaluated again with its own recorded config.

    python -m gmmvit.config.evaluation PATH [--ckpt best|last] [KEY=VALUE | GROUP=OPTION ...]

PATH is a run folder or a sweep folder (sweeps nested in it too, found as ``make table`` finds them):
each finished run is evaluated as a single run is, the others are listed and skipped (a running
run's checkpoint is mid-training), then the sweep's table is printed and written
(``gmmvit.sweeps.evaluation``). The overrides are checked against every run before any is evaluated.

The run's ``config.yaml`` (old ``_target_`` paths named as today) is the config; each override
replaces the one key or config group it names, checked by Hydra and the schema as a training
command line is (one line for a bad key or value). An override that would change the network the
weights belong to (``model.*``, ``mask.*``, the image size, channels or classes of ``dataset=...``) is
refused in one line; the test data, precision, attention path, device, batch size and ``limit_test``
may change. The evaluation itself is ``gmmvit.run.evaluate``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig, OmegaConf

from gmmvit.config.checks import check
from gmmvit.config.compose import compose_config
from gmmvit.config.refusals import GROUPS, explain
from gmmvit.config.reporting import fail, guarded
from gmmvit.errors import CheckpointError, CommandLine, ConfigError, DatasetUnavailable, one_line_errors
from gmmvit.run import runlock
from gmmvit.run.evaluate import CHECKPOINTS, evaluate_run, report
from gmmvit.run.identity import read_config
from gmmvit.run.records import METRICS, current_targets
from gmmvit.run.tracking import flatten
from gmmvit.sweeps.evaluation import summary_paths, write_summary
from gmmvit.sweeps.folders import CONFIG, Run, check_target, find_run_dirs, is_run_dir, read_any, stopped_detail

# what the network is built from (gmmvit.run.train.build_model): the weights fit only this
NETWORK_DATASET_KEYS = ("img_size", "channels", "num_classes")
KEEPING = {  # the overrides each command acts on (make locality reads its own images on its own path)
    "make eval": "another test set of the same image size, channels and classes, precision, attention, limit_test "
                 "and seed (which draw the limited test images), and how it runs: device, threads, workers, "
                 "data_on_gpu, recipe.batch_size",
    "make locality": "another test set of the same image size, channels and classes, precision, and how it runs: "
                     "device, threads, data_on_gpu, recipe.batch_size"}
# how a command runs, not what it measures: taken, and left out of the result's name
HOW_IT_RUNS = ("device", "runs_per_gpu", "threads", "workers", "data_on_gpu", "recipe.batch_size")
# the keys each command reads besides the network's (gmmvit.run.evaluate, gmmvit.run.locality): an
# override of any other one would change nothing it measures, yet name its result
READS = {"make eval": ("dataset", "paths.data", "precision", "attention", "limit_test", "seed", *HOW_IT_RUNS),
         "make locality": ("dataset", "paths.data", "precision", *HOW_IT_RUNS)}
WHERE_RUNS_ARE = "RUN names a run folder, multirun/<sweep>/<run>, SWEEP a sweep folder, multirun/<sweep>"


def network(cfg: DictConfig) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    keys = {**flatten({"model": plain["model"], "mask": plain["mask"]})}
    keys.update({f"dataset.{k}": plain["dataset"][k] for k in NETWORK_DATASET_KEYS})
    return keys


def recorded_config(run_dir: Path, command: str = "make eval") -> DictConfig:
    path = Path(run_dir) / CONFIG
    if not path.exists() and not (Path(run_dir) / METRICS).exists():
        raise ConfigError(f"{run_dir} holds no {CONFIG}: RUN names a run folder, multirun/<sweep>/<run>")
    plain, fault = read_config(path, groups=GROUPS)
    if fault is not None:
        raise ConfigError(f"{path} {fault}: {command} builds the network from it; restore it, or relaunch the "
                          "run's training command, which writes it again from the config its checkpoint records")
    return OmegaConf.create(current_targets(plain))


def _schema_keys(plain: dict, typed: DictConfig) -> dict:
    """``plain`` without the keys the schema of ``typed`` lacks (a run recorded by an earlier gmmvit)."""
    return {k: _schema_keys(v, typed[k]) if isinstance(v, dict) and isinstance(typed._get_node(k), DictConfig) else v
            for k, v in plain.items() if k in typed}


def check_as_training(cfg: DictConfig, composed: DictConfig) -> None:
    """``cfg`` through the checks a training command line gets (``gmmvit.config.checks``), its values set
    into the typed nodes of ``composed`` so that every range is read."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    try:
        typed = OmegaConf.merge(composed, _schema_keys(plain, composed))
    except Exception as exc:
        raise ConfigError(explain(exc) or str(exc).splitlines()[0]) from None
    check(typed)


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:
        raise ConfigError(f"cannot read the override(s) {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None


def eval_config(run_dir: Path, overrides: list[str], command: str = "make eval") -> DictConfig:
    """The run's recorded config with ``overrides`` applied, checked as a training command line is and
    refused in one line where they would change the network; ``command``: the one the user ran."""
    recorded = recorded_config(run_dir, command)
    base = [f"{group}={recorded[group].name}" for group in ("model", "mask", "dataset", "logger")]
    data_dir = next((o.partition("=")[2] for o in overrides if o.startswith("paths.data=")), recorded.paths.data)
    try:  # the overrides checked as a training command line would be, against the run's own choices
        composed = compose_config(base + list(overrides), data_dir=data_dir)
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise ConfigError(f"{command}: {str(exc).splitlines()[0]}") from None
        raise ConfigError(line) from None
    chosen = OmegaConf.create(OmegaConf.to_container(composed, resolve=True, enum_to_str=True))
    cfg, before = recorded.copy(), network(recorded)
    seeded = None
    for text, override in zip(overrides, _parse(overrides)):
        key = override.key_or_group
        seeded = text if key == "seed" else seeded
        OmegaConf.update(cfg, key, OmegaConf.select(chosen, key), merge=False)
        after = network(cfg)
        changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        if changed:
            what = ", ".join(f"{k}: {before.get(k)} -> {after.get(k)}" for k in changed[:3])
            raise ConfigError(f"{text} changes the network the weights belong to ({what}); {command} takes only "
                              f"overrides that keep it: {KEEPING.get(command, KEEPING['make eval'])}")
        if not _reads(command, key):
            raise ConfigError(f"{text}: {command} does not read {key}, so it would change nothing the command "
                              f"measures; drop it ({command} acts on {KEEPING[command]})")
    if seeded is not None and command == "make eval" and cfg.get("limit_test") is None:
        raise ConfigError(f"{seeded}: make eval reads the seed only to draw the limit_test images, and this "
                          "evaluation takes the whole test set, so it would change nothing; drop it (or give "
                          "limit_test=N with it)")
    check_as_training(cfg, composed)
    return cfg


def _reads(command: str, key: str) -> bool:
    """Whether ``command`` reads ``key``: one of ``READS``, or of the network (whose changes are refused)."""
    return any(key == read or key.startswith(read + ".") for read in (*READS[command], "model", "mask"))


def _plain(node):
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node


def naming(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The ``overrides`` that change what ``make eval`` measures on the run in ``run_dir``: not one
    of how it runs (``HOW_IT_RUNS``), nor the run's own value."""
    recorded = recorded_config(run_dir)
    return [text for text, override in zip(overrides, _parse(overrides))
            if not override.key_or_group.startswith(HOW_IT_RUNS)
            and _plain(OmegaConf.select(cfg, override.key_or_group))
            != _plain(OmegaConf.select(recorded, override.key_or_group))]


def tell_unnamed(overrides: list[str], named: list[str], whose: str) -> None:
    for text in overrides:
        if text not in named:
            print(f"make eval: {text} is {whose} own value or how the evaluation runs; the result's name "
                  "leaves it out", flush=True)


def eval_name(checkpoint: str, overrides: list[str]) -> str:
    """``best`` or ``last``, then the overrides in order: ``best,dataset=fashion_mnist,precision=fp32``."""
    return ",".join([checkpoint, *sorted(overrides)]).replace("/", "_")


def run_eval(run_dir: Path, checkpoint: str, overrides: list[str]) -> dict:
    cfg = eval_config(run_dir, overrides)
    named = naming(run_dir, cfg, overrides)
    tell_unnamed(overrides, named, "the run's")
    name = eval_name(checkpoint, named)
    result = evaluate_run(cfg, run_dir, checkpoint, name)
    print(report(result), flush=True)
    print(f"make eval: {Path(run_dir) / 'eval' / name}.json and .png", flush=True)
    return result


def unfinished(run: Run) -> Optional[str]:
    """Why ``run`` is not evaluated in a sweep (its state and who trains it or why it ended), or None."""
    if run.state == "stopped":
        return stopped_detail(run)
    if run.state != "finished":
        detail = run.trainer or run.reason
        return f"{run.state} ({detail})" if detail else run.state
    held = runlock.trainer(run.path)
    if held is not None and held[0]:  # a relaunch is rewriting its weights
        return f"held by a trainer ({held[1]})"
    return None


def checked_runs(sweep_dir: Path, overrides: list[str], command: str, skip: Callable[[Path, str], None]
                 ) -> list[tuple[Run, DictConfig]]:
    """Every finished run under ``sweep_dir`` with its recorded config under ``overrides``, each
    checked before any run is read further: an override refused for one run ends the command
    naming that run; a run not finished, held by a trainer or with a damaged config.yaml is
    ``skip``ped with why."""
    check_target(Path(sweep_dir), WHERE_RUNS_ARE)
    run_dirs = find_run_dirs(sweep_dir)
    if not run_dirs:
        raise ConfigError(f"no runs under {sweep_dir} (no folder holds {METRICS} or {CONFIG}); {WHERE_RUNS_ARE}")
    checked = []
    for run_dir in run_dirs:
        run = read_any(run_dir)
        why = unfinished(run)
        if why is not None:
            skip(run_dir, why)
            continue
        try:
            recorded_config(run_dir, command)
        except ConfigError as exc:  # the run's own file, not the overrides
            skip(run_dir, str(exc))
            continue
        try:
            checked.append((run, eval_config(run_dir, overrides, command)))
        except ConfigError as exc:
            raise ConfigError(f"{run_dir}: {exc}") from None
    return checked


def evaluate_sweep(sweep_dir: Path, checkpoint: str, overrides: list[str]) -> str:
    """Every finished run under ``sweep_dir`` (``checked_runs``) evaluated as ``run_eval`` evaluates
    one, then the sweep's table written and returned; a run's own fault (its checkpoint or data)
    skips it."""
    skipped = []

    def skip(run_dir: Path, why: str) -> None:
        print(f"make eval: {run_dir} skipped: {why}", flush=True)
        skipped.append({"run": str(run_dir), "why": why})

    runs = checked_runs(sweep_dir, overrides, "make eval", skip)
    named = {text for run, cfg in runs for text in naming(run.path, cfg, overrides)}
    named = [text for text in overrides if text in named]  # one name for every run of the sweep
    tell_unnamed(overrides, named, "every run's")
    name = eval_name(checkpoint, named)
    evaluated = []
    for run, cfg in runs:
        try:
            result = evaluate_run(cfg, run.path, checkpoint, name)
        except (CheckpointError, DatasetUnavailable) as exc:
            skip(run.path, str(exc))
            continue
        print(report(result), flush=True)
        evaluated.append((run, result))
    if not evaluated:
        raise ConfigError(f"no finished run under {sweep_dir} could be evaluated (the lines above say why): "
                          "train the sweep first")
    markdown = write_summary(sweep_dir, name, checkpoint, overrides, evaluated, skipped)
    print(markdown + f"make eval: {' and '.join(map(str, summary_paths(sweep_dir, name)))}", flush=True)
    return markdown


def evaluate(path: Path, checkpoint: str, overrides: list[str]):
    """``make eval`` on ``path``: one run (``run_eval``) or a sweep (``evaluate_sweep``)."""
    path = Path(path)
    check_target(path, WHERE_RUNS_ARE)
    if is_run_dir(path):
        return run_eval(path, checkpoint, overrides)
    return evaluate_sweep(path, checkpoint, overrides)


@one_line_errors
def main(argv=None) -> int:
    ap = CommandLine(prog="python -m gmmvit.config.evaluation", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, nargs="?", help="a run folder or a sweep folder, multirun/<sweep>[/<run>]")
    ap.add_argument("--ckpt", choices=CHECKPOINTS, default="best", help="best.pt (default) or the last checkpoint")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE or GROUP=OPTION, e.g. dataset=digits precision=fp32")
    args = ap.parse_intermixed_args(argv)  # `make` puts the overrides after --ckpt
    if args.run is None:
        fail("make eval needs RUN=multirun/<sweep>/<run> (a run folder) or SWEEP=multirun/<sweep>")
    guarded(evaluate, args.run, args.ckpt, args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
