"""``make dashboard``: a sweep's W&B workspace view and report, built with W&B's wandb-workspaces.

    python -m gmmvit.sweeps.dashboard [SWEEP_DIR ...]        # make dashboard [SWEEP=multirun/NAME]

For each sweep (its runs are one W&B group, ``cfg.sweep``) it creates or updates:

- a saved workspace view named ``gmmvit: <group>``: runs filtered to the group, grouped by model and
  mask, dataset when the sweep spans several, and every setting it varies (an ablation's
  ``model.pool``, ``mask.num_kernels``, ...: the table's ``[key=value]`` rows); sections Accuracy
  (``test/top1`` against epoch, mean with a min-max band per group), Table (best top-1 per group, mean
  and min-max over seeds; under the clean protocol the test top-1 at the best validation epoch), Masks (the ``masks/central_query`` images, the sigma/alpha table), Speed (img/s) and
  Cost (params, MACs);
- a report ``gmmvit: <group> table``: the table as ``make table`` prints it, its gains plot (logged
  by a small run of job type ``table`` in the group) and links to the view.

The view has a fixed internal name derived from the group and the report is found by its title,
so running it again updates both instead of making copies. The specification of both is written
to ``<sweep>/wandb_dashboard.json`` every time; with no API key or no network that is all it
does (one line says so; publish later with ``make sync`` and ``make dashboard``). Entity and
project come from the runs' logger config. Any failure is one line; a sweep never fails on it.
``gmmvit.config.callbacks.Publish`` does this once at the end of a multirun.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gmmvit.errors import CommandLine, ConfigError, one_line_errors
from gmmvit.run import tracking
from gmmvit.run.figures import MASKS_DIR, PARAMS_CSV, SNAPSHOTS
from gmmvit.run.records import METRICS, read_json, write_json
from gmmvit.run.tracking import (EPOCH, EPOCH_S, IMG_PER_S, MACS, MASK_IMAGE, MASK_PARAMS, PARAMS, TOP1,
                                 TOP1_AT_BEST_VAL, TOP1_BEST, TRAIN_LOSS, offline_logs, online_logs)
from gmmvit.sweeps.cells import varied_settings
from gmmvit.sweeps.folders import collect_sweeps, read_whole
from gmmvit.sweeps.render import render_png
from gmmvit.sweeps.table import build

SPEC_FILE = "wandb_dashboard.json"
TABLE_JOB_TYPE = "table"              # the run holding the report's gains plot
GAINS_IMAGE = "table/gains"
# run config keys (flattened, as the tracker logs them) the view groups by
MODEL_KEY, MASK_KEY, DATASET_KEY = "model.name", "mask.name", "dataset.name"
SECTIONS = ("Accuracy", "Table", "Masks", "Speed", "Cost")


def config_column(key: str):
    """A flat dotted config key (``model.name``) as W&B stores it: ``{"model.name": {"value": ..}}``."""
    import wandb_workspaces.workspaces as ws

    return ws.Config(f"{key}.value")


@dataclass
class Sweep:
    """What the dashboard needs from a sweep's run folders."""

    folder: Path
    group: str
    entity: Optional[str]
    project: str
    datasets: list[str]
    runs: list = field(default_factory=list)   # gmmvit.sweeps.folders.Run
    logged: bool = True                       # the runs used logger=wandb
    varied: list = field(default_factory=list)  # flat config keys the sweep varies besides model, mask, dataset

    @property
    def validated(self) -> bool:
        """Every run holds out a validation split (the clean protocol): its result is the test top-1 at
        the best validation epoch, not the best test top-1."""
        return bool(self.runs) and all(float(r.config.get("dataset.val_fraction") or 0) > 0 for r in self.runs)

    @property
    def result(self) -> str:
        """The summary key of each run's result, as the sweep's table selects it by default."""
        return TOP1_AT_BEST_VAL if self.validated else TOP1_BEST

    @property
    def view_name(self) -> str:
        return f"gmmvit: {self.group}"

    @property
    def report_title(self) -> str:
        return f"gmmvit: {self.group} table"

    @property
    def view_internal_name(self) -> str:
        """Fixed per entity/project/group: saving again updates this view (``nw-<id>-v``, W&B's form)."""
        digest = hashlib.sha1(f"gmmvit\0{self.project}\0{self.group}".encode()).hexdigest()[:11]
        return f"nw-{digest}-v"

    @property
    def table_run_id(self) -> str:
        return "table-" + hashlib.sha1(f"{self.project}\0{self.group}".encode()).hexdigest()[:16]

    def view_url(self, entity: str) -> str:
        import wandb

        base = wandb.Settings().app_url.rstrip("/")     # the W&B app of WANDB_BASE_URL / W&B's default
        return f"{base}/{entity or '<entity>'}/{self.project}?nw={self.view_internal_name[3:-2]}"


def read_sweep(folder: Path, runs: list) -> Sweep:
    def common(key, default=None):
        values = Counter(r.config.get(key) for r in runs if r.config.get(key) is not None)
        return values.most_common(1)[0][0] if values else default

    datasets = sorted({r.dataset for r in runs})
    return Sweep(folder=Path(folder), group=str(common("sweep", Path(folder).name)),
                 entity=common("logger.entity"), project=str(common("logger.project", "gmmvit")),
                 datasets=datasets, runs=runs, logged=common("logger.name") == "wandb",
                 varied=varied_settings(runs))


# --- the view ----------------------------------------------------------------------------------------

def run_filters(sweep: Sweep) -> list:
    import wandb_workspaces.workspaces as ws

    return ws.And(ws.Metric("Group") == sweep.group, ws.Metric("JobType") != TABLE_JOB_TYPE)


def group_keys(sweep: Sweep) -> list[str]:
    """What tells the table's rows apart, so a group never averages two settings of an ablation."""
    return [MODEL_KEY, MASK_KEY] + ([DATASET_KEY] if len(sweep.datasets) > 1 else []) + sweep.varied


def grouping(sweep: Sweep) -> list:
    return [config_column(k) for k in group_keys(sweep)]


def group_names(sweep: Sweep) -> list[str]:
    return [k.removesuffix(".name") for k in group_keys(sweep)]


def sections(sweep: Sweep) -> list:
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def curve(metric, title):
        return wr.LinePlot(title=title, x=EPOCH, y=[metric], title_x="epochs completed",
                           groupby_aggfunc="mean", groupby_rangefunc="minmax")

    def bars(metric, title):
        return wr.BarPlot(title=title, metrics=[metric], orientation="h",
                          groupby_aggfunc="mean", groupby_rangefunc="minmax")

    panels = {
        "Accuracy": [curve(TOP1, "test top-1 (%): mean, min-max over seeds"),
                     curve(TRAIN_LOSS, "training loss: mean, min-max over seeds")],
        "Table": [bars(sweep.result, ("test top-1 (%) at the best val epoch" if sweep.validated else "best test top-1 (%)")
                       + f" per {' x '.join(group_names(sweep))}: mean, min-max over seeds")],
        "Masks": [wr.MediaBrowser(title="central query's mask, as it learns", media_keys=[MASK_IMAGE],
                                  gallery_axis="step"),
                  wr.WeavePanelSummaryTable(table_name=MASK_PARAMS)],
        "Speed": [curve(IMG_PER_S, "training img/s"), curve(EPOCH_S, "seconds per epoch")],
        "Cost": [bars(PARAMS, "parameters"), bars(MACS, "MACs per image")],
    }
    return [ws.Section(name=name, panels=panels[name], is_open=True) for name in SECTIONS]


def build_workspace(sweep: Sweep, entity: str):
    import wandb_workspaces.workspaces as ws

    view = ws.Workspace(
        entity=entity, project=sweep.project, name=sweep.view_name, sections=sections(sweep),
        settings=ws.WorkspaceSettings(x_axis=EPOCH),
        runset_settings=ws.RunsetSettings(
            filters=run_filters(sweep), groupby=grouping(sweep),
            pinned_columns=[f"summary:{sweep.result}", f"summary:{PARAMS}", f"summary:{MACS}"]))
    object.__setattr__(view, "_internal_name", sweep.view_internal_name)
    return view


# --- the report --------------------------------------------------------------------------------------

def table_text(sweep: Sweep) -> tuple[str, object]:
    """The markdown ``make table`` prints for this sweep, and its SweepTable (None: nothing finished)."""
    return build(sweep.folder, sweep.runs, write=False)


def build_report(sweep: Sweep, entity: str, text: str, online: bool = False, reference: str = "mask=none"):
    """``online``: the panel grids name their entity, which the library resolves through the W&B API
    when the report is serialised; offline they are left to the report's entity. ``reference``: the
    table's reference row (``gain_reference``), which every gain pairs with."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    view_url = sweep.view_url(entity)
    runs_entity = entity if online else ""
    runs = wr.Runset(entity=runs_entity, project=sweep.project, name=sweep.group, filters=run_filters(sweep),
                     groupby=[f"config.{k}.value" for k in group_keys(sweep)])
    gains = wr.Runset(entity=runs_entity, project=sweep.project, name="table",
                      filters=ws.And(ws.Metric("Group") == sweep.group, ws.Metric("JobType") == TABLE_JOB_TYPE))
    return wr.Report(
        entity=entity, project=sweep.project, title=sweep.report_title,
        description=f"The paper's table for the W&B group {sweep.group}, as `make table` prints it.",
        blocks=[
            wr.P([f"Every run of the sweep, grouped by {', '.join(group_names(sweep))}: the workspace view ",
                  wr.Link(text=sweep.view_name, url=view_url), "."]),
            wr.H2("The table"),
            wr.MarkdownBlock(text=text),
            wr.H2(f"Gain over {reference}, paired by seed"),
            wr.PanelGrid(runsets=[gains], panels=[wr.MediaBrowser(title="gains, paired by seed (95% CI)",
                                                                  media_keys=[GAINS_IMAGE])]),
            wr.H2("Test top-1 against epoch"),
            wr.PanelGrid(runsets=[runs], panels=[
                wr.LinePlot(title="test top-1 (%): mean, min-max over seeds", x=EPOCH, y=[TOP1],
                            groupby_aggfunc="mean", groupby_rangefunc="minmax")]),
            wr.P([wr.Link(text="Open the workspace view", url=view_url),
                  " for accuracy, the table, the masks, speed and cost."]),
        ])


# --- the specification file, publishing --------------------------------------------------------------

@dataclass
class Dashboard:
    sweep: Sweep
    entity: str
    workspace: object          # wandb_workspaces.workspaces.Workspace
    report: object             # wandb_workspaces.reports.v2.Report
    table: object = None       # gmmvit.sweeps.table.SweepTable, None when nothing finished


def build_dashboard(folder: Path, runs: list, entity: Optional[str] = None, online: bool = False) -> Dashboard:
    sweep = read_sweep(folder, runs)
    entity = entity or sweep.entity or ""
    text, table = table_text(sweep)
    reference = ", ".join(table.reference_items) if table is not None else "mask=none"
    return Dashboard(sweep, entity, build_workspace(sweep, entity),
                     build_report(sweep, entity, text, online, reference), table)


def specification(d: Dashboard, published: Optional[dict] = None) -> dict:
    s = d.sweep
    return {
        "sweep": str(s.folder), "group": s.group, "entity": d.entity or None, "project": s.project,
        "workspace": {"name": s.view_name, "internal_name": s.view_internal_name, "url": s.view_url(d.entity),
                      "view": d.workspace._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)},
        "report": {"title": s.report_title,
                   "viewspec": d.report._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)},
        "table_run": {"id": s.table_run_id, "job_type": TABLE_JOB_TYPE, "image": GAINS_IMAGE},
        "published": published,
    }


def load_specification(path: Path):
    """The view and report of a written specification, as the library's objects."""
    import json

    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.reports.v2 import internal as report_internal
    from wandb_workspaces.workspaces import internal as view_internal

    spec = json.loads(Path(path).read_text())
    view = ws.Workspace._from_model(view_internal.View.model_validate(spec["workspace"]["view"]))
    report = wr.Report._from_model(report_internal.ReportViewspec.model_validate(spec["report"]["viewspec"]))
    return spec, view, report


def log_gains(d: Dashboard) -> None:
    """The gains plot as an image of the group's ``table`` run (one run per group, resumed each time)."""
    import wandb

    s = d.sweep
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "gains.png"
        render_png(d.table, png)
        run = wandb.init(project=s.project, entity=d.entity, id=s.table_run_id, resume="allow", group=s.group,
                         job_type=TABLE_JOB_TYPE, name=f"{s.group}-table", dir=tmp, reinit="finish_previous",
                         settings=wandb.Settings(silent=True, console="off"))
        run.log({GAINS_IMAGE: wandb.Image(str(png))})
        run.finish()


def publish(d: Dashboard) -> dict:
    """Save the view and the report to W&B, updating the ones saved before; their URLs."""
    import wandb
    from wandb_workspaces.workspaces import internal as view_internal

    s = d.sweep
    try:
        existing = view_internal.View.from_name(d.entity, s.project, s.view_internal_name)
        object.__setattr__(d.workspace, "_internal_id", existing.id)
    except ValueError:          # not saved yet (or no such project yet): this save creates it
        pass
    d.workspace.save()
    if d.table is not None:
        log_gains(d)
    for saved in wandb.Api().reports(f"{d.entity}/{s.project}"):
        if saved.display_name == s.report_title:
            d.report.id = saved.id
            break
    d.report.save()
    return {"workspace_url": d.workspace.url, "report_url": d.report.url}


def runs_were_offline(runs: list) -> bool:
    """Every run logged offline and none online."""
    offline = any(offline_logs(r.path) for r in runs)
    online = any(online_logs(r.path) for r in runs)
    return offline and not online


def dashboard(folder: Path, runs: list, at_sweep_end: bool = False) -> bool:
    """Build, write the specification, publish when W&B can be reached (at a sweep's end: only when
    its runs were online). One line on every outcome; False when something failed."""
    folder = Path(folder)
    for run in runs:
        if run.state == "unreadable":
            print(f"[gmmvit] W&B dashboard: {run.path} left out, unreadable: {run.reason}", flush=True)
    runs = [r for r in runs if r.state != "unreadable"]
    spec_path = folder / SPEC_FILE
    later = f"make sync SWEEP={folder}, then make dashboard SWEEP={folder}"
    try:
        sweep = read_sweep(folder, runs)
        if not sweep.logged:
            print(f"[gmmvit] W&B dashboard: {folder} was not logged to W&B (logger=none); nothing to build",
                  flush=True)
            return True
        online, why = tracking.has_api_key() and tracking.wandb_reachable(), "no API key or no network"
        if online and at_sweep_end and runs_were_offline(runs):
            online, why = False, "the runs were logged offline"
        entity = None
        if online:
            import wandb

            entity = sweep.entity or wandb.Api().default_entity
        d = build_dashboard(folder, runs, entity, online)
        spec = specification(d)
    except Exception as exc:    # a broken wandb / wandb-workspaces install, W&B refusing the key: nothing written
        print(f"[gmmvit] W&B dashboard for {folder} not built ({type(exc).__name__}: {exc})", flush=True)
        return False
    write_json(spec_path, spec)
    if not online:
        print(f"[gmmvit] W&B dashboard: {why}; view and report written to {spec_path} (publish later: {later})",
              flush=True)
        return True
    try:
        urls = publish(d)
    except Exception as exc:
        print(f"[gmmvit] W&B dashboard for {folder} not published ({type(exc).__name__}: {exc}); "
              f"view and report written to {spec_path}", flush=True)
        return False
    write_json(spec_path, specification(d, published=urls))
    print(f"[gmmvit] W&B dashboard: view {urls['workspace_url']} report {urls['report_url']}", flush=True)
    return True


# --- a picture of the view, drawn from its specification and the runs' own files --------------------

# where each name a panel reads lives in the run folder: metrics.json history / top level / final
LOCAL_HISTORY = {TOP1: "test_top1", TRAIN_LOSS: "train_loss", IMG_PER_S: "img_per_s", EPOCH_S: "epoch_s"}
LOCAL_SUMMARY = {TOP1_BEST: ("final", "best_top1"), TOP1_AT_BEST_VAL: ("final", "test_top1_at_best_val"),
                 PARAMS: ("params",), MACS: ("macs",)}


def render_preview(spec_path: Path, runs: list, out: Path) -> None:
    """The saved view as W&B would draw it for these runs: one row per section, its panels in order
    (curves: mean and min-max band per model x mask group; bars: mean and min-max over seeds; the
    last mask image of a GMM run; its last sigma/alpha rows). For the README; no W&B needed."""
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import wandb_workspaces.reports.v2 as wr

    _, view, _ = load_specification(spec_path)
    keys = [k.name.removesuffix(".value") for k in view.runset_settings.groupby]
    groups: dict[str, list] = {}
    for run in sorted(runs, key=lambda r: r.label):
        label = " / ".join(str(run.config.get(k)) if k.endswith(".name") else f"{k}={run.config.get(k)}"
                           for k in keys)
        groups.setdefault(label, []).append((run, read_json(run.path / METRICS) or {}))
    colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    ncols = max(len(s.panels) for s in view.sections)
    fig, axes = plt.subplots(len(view.sections), ncols, figsize=(4.2 * ncols, 2.9 * len(view.sections)),
                             squeeze=False)
    for row, section in zip(axes, view.sections):
        for ax in row[len(section.panels):]:
            ax.axis("off")
        for ax, panel in zip(row, section.panels):
            ax.set_title(getattr(panel, "title", None) or getattr(panel, "table_name", ""), fontsize=8)
            if isinstance(panel, wr.LinePlot):
                metric = LOCAL_HISTORY[panel.y[0].name]
                for g, members in groups.items():
                    curves = [[r[metric] for r in m.get("history", [])] for _, m in members]
                    n = min(map(len, curves))
                    if n == 0:
                        continue
                    y, x = np.array([c[:n] for c in curves]), np.arange(1, n + 1)
                    ax.plot(x, y.mean(0), color=colors[g], label=g, lw=1.5)
                    ax.fill_between(x, y.min(0), y.max(0), color=colors[g], alpha=0.2, lw=0)
                ax.set_xlabel(panel.x.name, fontsize=8)
                ax.set_ylabel(panel.y[0].name, fontsize=8)
                ax.legend(fontsize=6)
            elif isinstance(panel, wr.BarPlot):
                path = LOCAL_SUMMARY[panel.metrics[0].name]
                names, means, lows, highs = [], [], [], []
                for g, members in groups.items():
                    values = []
                    for _, m in members:
                        node = m
                        for k in path:
                            node = (node or {}).get(k)
                        if isinstance(node, (int, float)):
                            values.append(node)
                    if values:
                        names.append(g)
                        means.append(float(np.mean(values)))
                        lows.append(means[-1] - min(values))
                        highs.append(max(values) - means[-1])
                ax.barh(names, means, xerr=[lows, highs], color=[colors[g] for g in names], capsize=3)
                ax.set_xlabel(panel.metrics[0].name, fontsize=8)
                ax.invert_yaxis()
            elif isinstance(panel, wr.MediaBrowser):
                images = sorted(p for g, members in groups.items() for run, _ in members
                                for p in (run.path / MASKS_DIR).glob(SNAPSHOTS))
                if images:
                    ax.imshow(plt.imread(images[-1]))
                    ax.set_xlabel(f"{panel.media_keys[0]}: {images[-1].parent.parent.name[:40]}...", fontsize=6)
                ax.set_xticks([])
                ax.set_yticks([])
            elif isinstance(panel, wr.WeavePanelSummaryTable):
                tables = sorted(p for members in groups.values() for run, _ in members
                                for p in (run.path / MASKS_DIR).glob(PARAMS_CSV))
                ax.axis("off")
                if tables:
                    rows = list(csv.reader(tables[-1].open()))
                    last = [r for r in rows[1:] if r[0] == rows[-1][0]][:8]
                    cells = [[f"{float(v):.3g}" if i >= 4 else v for i, v in enumerate(r)] for r in last]
                    table = ax.table(cellText=cells, colLabels=rows[0], loc="center", fontsize=6)
                    table.auto_set_font_size(False)
                    table.set_fontsize(6)
            ax.tick_params(labelsize=7)
    grouping = ", ".join(keys)
    fig.suptitle(f"W&B view \"{view.name}\" in {view.entity or '<entity>'}/{view.project}\n"
                 f"runs: {view.runset_settings.filters}\ngrouped by {grouping}", fontsize=10)
    fig.tight_layout(rect=(0.04, 0, 1, 0.94))
    # in the margin, after the layout: beside the axes, a section's name would sit on long group labels
    for row, section in zip(axes, view.sections):
        box = row[0].get_position()
        fig.text(0.012, (box.y0 + box.y1) / 2, section.name, rotation=90, va="center", ha="center",
                 fontsize=12, fontweight="bold")
    fig.savefig(out, dpi=80)
    plt.close(fig)


def preview_path(text: str) -> Path:
    """``--preview``'s PNG, refused before anything is built when it cannot be written."""
    path = Path(text)
    if path.is_dir():
        raise ConfigError(f"--preview {path} is a folder; give the PNG file to draw into, e.g. {path / 'view.png'}")
    if not path.parent.is_dir():
        raise ConfigError(f"--preview {path}: folder {path.parent} does not exist; create it or draw into "
                          "an existing folder")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--preview {path}: folder {path.parent} is not writable; draw into a folder you "
                          "can write")
    return path


@one_line_errors
def main(argv=None) -> int:
    ap = CommandLine(prog="python -m gmmvit.sweeps.dashboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="*", default=["multirun"], help="sweep folders, or folders of sweeps")
    ap.add_argument("--preview", metavar="PNG", help="also draw the view, from its specification and the "
                                                   "runs' files, into this PNG (one sweep)")
    args = ap.parse_args(argv)
    preview = preview_path(args.preview) if args.preview else None
    paths = [Path(p) for p in args.sweeps]
    sweeps = collect_sweeps(paths)
    for folder in sweeps:
        if not read_whole(folder, paths):  # its view and report would show these runs as the sweep
            raise ConfigError(f"make dashboard builds a sweep's view from all its runs, and was given run folders "
                              f"of {folder}; give the sweep: make dashboard SWEEP={folder}")
    if preview is not None and len(sweeps) > 1:
        raise ConfigError(f"--preview draws one sweep's view, and {len(sweeps)} sweeps were found "
                          f"({', '.join(map(str, sweeps))}); name one: make dashboard SWEEP=multirun/NAME "
                          f"ARGS='--preview {preview}'")
    ok = [dashboard(folder, runs) for folder, runs in sweeps.items()]
    folder, runs = next(iter(sweeps.items()))
    if preview is not None and (folder / SPEC_FILE).is_file():  # else dashboard() said why nothing was built
        render_preview(folder / SPEC_FILE, runs, preview)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
