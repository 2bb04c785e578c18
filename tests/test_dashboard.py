"""`make dashboard`: the W&B view and report of a real offline sweep, checked from wandb-workspaces'
own objects and against what the runs really logged; offline and failure paths are one line."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
import http.server
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
import wandb_workspaces.reports.v2 as wr

from conftest import compose_cfg, wandb_without_account
from gmmvit.config import ablations
from gmmvit.run import tracking
from gmmvit.run.train import train
from gmmvit.sweeps import dashboard
from gmmvit.sweeps.folders import collect
from gmmvit.sweeps.table import build as build_table


def logged(sweep_dir: Path) -> dict:
    """Every key the sweep's offline runs logged: history, summary and config (read from their logs)."""
    keys = {"history": set(), "summary": set(), "config": set()}
    for offline in sweep_dir.glob("*/wandb/offline-run-*"):
        deadline = time.time() + 60      # W&B's service may finish writing a moment after the run
        while not (run := tracking.read_offline_run(offline))["complete"] and time.time() < deadline:
            time.sleep(0.5)
        for row in run["history"]:
            keys["history"] |= set(row)
        keys["summary"] |= set(run["summary"])
        keys["config"] |= set(run["config"])
    return keys


def history_has(keys: set, name: str) -> bool:
    """A scalar logged as ``name``, or media/tables logged under it (``name/path``, ``name/_type``)."""
    return name in keys or any(k.startswith(name + "/") for k in keys)


def config_key(column) -> str:
    return column.name.removesuffix(".value")


@pytest.fixture(scope="module")
def built(offline_sweep):
    sweep_dir, stdout = offline_sweep
    spec, view, report = dashboard.load_specification(sweep_dir / dashboard.SPEC_FILE)
    return sweep_dir, stdout, spec, view, report


@pytest.fixture(autouse=True)
def no_account(monkeypatch, tmp_path):
    for k, v in wandb_without_account({}, tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_sweep_end_writes_the_specification_and_says_so_in_one_line(built):
    sweep_dir, stdout, spec, _, _ = built
    lines = [line for line in stdout.splitlines() if "W&B dashboard" in line]
    assert len(lines) == 1 and "no API key or no network" in lines[0]
    assert str(sweep_dir / dashboard.SPEC_FILE) in lines[0] and "make dashboard" in lines[0]
    assert spec["group"] == "dashtest" and spec["published"] is None


def test_view_shows_the_sweeps_group_grouped_by_model_and_mask(built):
    sweep_dir, _, spec, view, _ = built
    assert view.name == "gmmvit: dashtest"
    assert re.search(r"""Metric\("Group"\) == 'dashtest'""", view.runset_settings.filters)
    assert [config_key(c) for c in view.runset_settings.groupby] == ["model.name", "mask.name"]
    assert {"model.name", "mask.name"} <= logged(sweep_dir)["config"]    # the keys runs really carry


def test_every_section_holds_its_panels_on_metrics_the_runs_log(built):
    sweep_dir, _, _, view, _ = built
    keys = logged(sweep_dir)
    panels = {s.name: s.panels for s in view.sections}
    assert list(panels) == ["Accuracy", "Table", "Masks", "Speed", "Cost"]

    def curves(section):
        return [(p.x.name, [m.name for m in p.y], p.groupby_aggfunc, p.groupby_rangefunc)
                for p in panels[section] if isinstance(p, wr.LinePlot)]

    assert ("epoch", ["test/top1"], "mean", "minmax") in curves("Accuracy")
    assert ("epoch", ["train/img_per_s"], "mean", "minmax") in curves("Speed")
    [best] = [p for p in panels["Table"] if isinstance(p, wr.BarPlot)]
    assert [m.name for m in best.metrics] == ["test/top1_best"] and best.groupby_aggfunc == "mean"
    assert sorted(m.name for p in panels["Cost"] for m in p.metrics) == ["macs", "params"]
    [images] = [p for p in panels["Masks"] if isinstance(p, wr.MediaBrowser)]
    [sigma_alpha] = [p for p in panels["Masks"] if isinstance(p, wr.WeavePanelSummaryTable)]
    assert images.media_keys == ["masks/central_query"] and sigma_alpha.table_name == "masks/gmm_params"

    # every name a panel reads is one the runs logged: a metric renamed in training breaks this
    for section in panels.values():
        for p in section:
            if isinstance(p, wr.LinePlot):
                assert all(history_has(keys["history"], n) for n in [p.x.name, *(m.name for m in p.y)]), p
            elif isinstance(p, wr.BarPlot):
                assert all(m.name in keys["summary"] for m in p.metrics), p
            elif isinstance(p, wr.MediaBrowser):
                assert all(history_has(keys["history"], k) for k in p.media_keys), p
            elif isinstance(p, wr.WeavePanelSummaryTable):
                assert history_has(keys["history"], p.table_name), p


def test_report_holds_the_table_as_make_table_prints_it_its_gains_and_links_the_view(built):
    sweep_dir, _, spec, _, report = built
    assert report.title == "gmmvit: dashtest table" and report.project == "gmmvit"
    [table] = [b for b in report.blocks if isinstance(b, wr.MarkdownBlock)]
    assert table.text == build_table(sweep_dir, collect([sweep_dir])[sweep_dir], write=False)[0]
    assert "Δ gmm − none" in table.text
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert any(isinstance(p, wr.MediaBrowser) and p.media_keys == [dashboard.GAINS_IMAGE]
               for g in grids for p in g.panels)
    links = [part for b in report.blocks if isinstance(b, wr.P) for part in b.text if isinstance(part, wr.Link)]
    assert links and all(link.url == spec["workspace"]["url"] for link in links)
    assert spec["workspace"]["url"].endswith("?nw=" + spec["workspace"]["internal_name"][3:-2])


def test_the_view_keeps_one_name_per_group_so_a_rerun_updates_it(built, tmp_path, capsys):
    sweep_dir, _, spec, view, _ = built
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy)
    assert dashboard.main([str(copy)]) == 0
    again, view_again, _ = dashboard.load_specification(copy / dashboard.SPEC_FILE)
    assert view._internal_name == view_again._internal_name == spec["workspace"]["internal_name"]
    assert view_again.runset_settings.filters == view.runset_settings.filters
    assert [(s.name, [type(p).__name__ for p in s.panels]) for s in view_again.sections] == \
        [(s.name, [type(p).__name__ for p in s.panels]) for s in view.sections]
    assert len(list(copy.glob("wandb_dashboard*"))) == 1
    assert capsys.readouterr().out.count("\n") == 1


def test_dataset_joins_the_grouping_when_the_sweep_spans_several(built):
    sweep_dir, *_ = built
    runs = collect([sweep_dir])[sweep_dir]
    runs[0].dataset = "fashion_mnist"
    view = dashboard.build_dashboard(sweep_dir, runs).workspace
    assert [config_key(c) for c in view.runset_settings.groupby] == ["model.name", "mask.name", "dataset.name"]


def test_entity_and_project_come_from_the_logger_config(built, tmp_path):
    sweep_dir, *_ = built
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("wandb"))
    for config in copy.glob("*/config.yaml"):
        text = config.read_text().replace("project: gmmvit", "project: masks-study").replace("entity: null",
                                                                                              "entity: my-lab")
        config.write_text(text)
    d = dashboard.build_dashboard(copy, collect([copy])[copy])
    assert (d.workspace.entity, d.workspace.project) == ("my-lab", "masks-study")
    assert (d.report.entity, d.report.project) == ("my-lab", "masks-study")
    assert "/my-lab/masks-study?nw=" in d.sweep.view_url(d.entity)
    assert dashboard.specification(d)["entity"] == "my-lab"     # offline: written without asking W&B


def fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_broken_wandb_workspaces_install_is_one_line_and_touches_nothing(built, tmp_path, monkeypatch, capsys):
    sweep_dir, *_ = built
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy)
    before = fingerprint(copy)
    for name in [m for m in sys.modules if m.startswith("wandb_workspaces")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)      # import fails, as in a broken install
    assert dashboard.main([str(copy)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not built" in out[0] and "ModuleNotFoundError" in out[0]
    assert fingerprint(copy) == before


class RefusingWandbServer(http.server.BaseHTTPRequestHandler):
    """A W&B server that refuses every call, as one does for a revoked key."""

    def do_POST(self):
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "user is not logged in"}]}')

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("entity", [None, "my-lab"])
def test_an_api_error_is_one_line_and_leaves_the_runs_untouched(built, tmp_path, monkeypatch, capsys, entity):
    sweep_dir, *_ = built
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy)
    if entity:
        for config in copy.glob("*/config.yaml"):
            config.write_text(config.read_text().replace("entity: null", f"entity: {entity}"))
    runs_before = {k: v for k, v in fingerprint(copy).items() if k != dashboard.SPEC_FILE}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusingWandbServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        assert dashboard.main([str(copy)]) == 1
    finally:
        server.shutdown()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and re.search(r"not (built|published) \(\w+Error: .*not logged in", out[0])
    assert {k: v for k, v in fingerprint(copy).items() if k != dashboard.SPEC_FILE} == runs_before


def test_at_a_sweeps_end_offline_runs_are_not_published_even_with_an_account(built, tmp_path, monkeypatch, capsys):
    sweep_dir, *_ = built
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusingWandbServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:      # any call to this server would fail: the line below proves none is made
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        assert dashboard.dashboard(copy, collect([copy])[copy], at_sweep_end=True)
    finally:
        server.shutdown()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "the runs were logged offline" in out[0] and "make sync" in out[0]


# a tiny ViT on digits, logged to W&B offline: the module fixtures' runs add what they vary
TINY_OFFLINE = ["model=vit", "dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
                "recipe.batch_size=32", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_test=64",
                "threads=1", "logger=wandb", "logger.mode=offline", "logger.mask_figures=0"]


@contextmanager
def offline_wandb(tmp):
    """W&B as on a machine without an account, for a module fixture's runs (no per-test monkeypatch there)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in wandb_without_account({}, tmp).items():
            mp.setenv(k, v)
        mp.delenv("WANDB_API_KEY", raising=False)
        yield


@pytest.fixture(scope="module")
def kernels_sweep(tmp_path_factory, data_dir):
    """The kernels ablation narrowed to K = 1, 5 x seeds 0, 1 on digits, W&B offline (4 real runs)."""
    tmp = tmp_path_factory.mktemp("kernels")
    sweep = tmp / "kernels"
    tiny = [*TINY_OFFLINE, "recipe.epochs=1", "limit_train=128", "mask.num_kernels=1,5", "seed=0,1"]
    with offline_wandb(tmp):
        for job in ablations.grid("kernels", tiny):
            name = ",".join(sorted(o for o in job if o.startswith(("mask.num_kernels=", "seed="))))
            cfg = compose_cfg(["experiment=ablation/kernels", *job], run_dir=sweep / name, data_dir=data_dir)
            assert train(cfg)["status"] == "finished"
    return sweep


def test_an_ablations_view_and_report_group_by_the_setting_it_varies(kernels_sweep, tmp_path):
    runs = collect([kernels_sweep])[kernels_sweep]
    d = dashboard.build_dashboard(kernels_sweep, runs)
    keys = [config_key(c) for c in d.workspace.runset_settings.groupby]
    assert keys == ["model.name", "mask.name", "mask.num_kernels"]      # K = 1 and K = 5 are two groups
    assert set(keys) <= logged(kernels_sweep)["config"]                # keys the runs' W&B config holds
    [best] = [p for s in d.workspace.sections if s.name == "Table" for p in s.panels]
    assert "per model x mask x mask.num_kernels" in best.title
    [curves] = [b for b in d.report.blocks if isinstance(b, wr.PanelGrid) and b.runsets[0].name == "ablation/kernels"]
    assert [str(g) for g in curves.runsets[0].groupby] == [f"config.{k}.value" for k in keys]
    assert any(isinstance(b, wr.H2) and "mask.num_kernels=5" in b.text for b in d.report.blocks)
    # the same split as make table's rows
    table = d.table.rows["vit"]
    assert sorted(dict(variant)["mask.num_kernels"] for _, variant in table) == [1, 5]


@pytest.fixture(scope="module")
def clean_sweep(tmp_path_factory, data_dir):
    """Two seeds of a tiny ViT-GMM under the clean protocol (a validation split), W&B offline."""
    tmp = tmp_path_factory.mktemp("clean")
    sweep = tmp / "clean"
    tiny = [*TINY_OFFLINE, "mask=gmm", "dataset.val_fraction=0.2", "recipe.epochs=3", "limit_train=256",
            "sweep=clean"]
    with offline_wandb(tmp):
        for seed in (0, 1):
            cfg = compose_cfg([*tiny, f"seed={seed}"], run_dir=sweep / f"seed={seed}", data_dir=data_dir)
            assert train(cfg)["status"] == "finished"
    return sweep


def test_under_the_clean_protocol_each_runs_wandb_summary_holds_the_test_top1_at_its_best_val_epoch(clean_sweep):
    for run_dir in sorted(clean_sweep.glob("seed=*")):
        final = json.loads((run_dir / "metrics.json").read_text())["final"]
        [offline] = list(tracking.offline_logs(run_dir))
        summary = tracking.read_offline_run(offline)["summary"]
        assert summary[tracking.TOP1_AT_BEST_VAL] == final["test_top1_at_best_val"]
        assert summary[tracking.VAL_TOP1_BEST] == final["best_val_top1"]
        assert summary[f"{tracking.VAL_TOP1_BEST}_epoch"] == final["best_val_epoch"] + 1


def test_under_the_clean_protocol_the_views_table_shows_the_protocols_result_not_the_best_test_top1(clean_sweep):
    d = dashboard.build_dashboard(clean_sweep, collect([clean_sweep])[clean_sweep])
    [best] = [p for s in d.workspace.sections if s.name == "Table" for p in s.panels]
    assert best.metrics == [tracking.TOP1_AT_BEST_VAL]
    assert best.title.startswith("test top-1 (%) at the best val epoch")
    assert tracking.TOP1_AT_BEST_VAL in logged(clean_sweep)["summary"]
