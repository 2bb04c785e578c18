"""Every reader of multirun/ (make table, status, dashboard, paper DRY=1, ablations DRY=1) survives
whatever a run folder holds: a folder it cannot read is listed as unreadable with why, the rest is
reported, and list-valued keys (a sigma_init sweep) group and print like numbers."""

from __future__ import annotations

import json
import os
from argparse import Namespace

import yaml

from gmmvit.config import paper_grid
from gmmvit.config import ablations
from gmmvit.sweeps import dashboard, status, table

MALFORMED = {  # folder: {file: text}
    "truncated_metrics": {"metrics.json": '{"status": "finished", "hist'},
    "empty_metrics": {"metrics.json": ""},
    "list_metrics": {"metrics.json": "[1, 2]"},
    "wrong_rows": {"metrics.json": json.dumps({"status": "running", "history": [{"epoch": "one"}], "final": {}})},
    "history_a_number": {"metrics.json": json.dumps({"status": "finished", "history": 5})},
    "truncated_config": {"config.yaml": "model: [1,\n  name: vit"},
    "list_config": {"config.yaml": "- 1\n- 2\n"},
    "config_only": {"config.yaml": "model: {name: vit}\nseed: 0\n"},
    "config_wrong_types": {"config.yaml": "model: 3\nseed: {a: [1]}\nrecipe: 5\ngain_reference: 7\n"},
}


def finished(seed, mask, sigma, top1):
    config = {"model": {"name": "vit"}, "mask": {"name": mask, **({"sigma_init": sigma} if sigma else {})},
              "dataset": {"name": "digits"}, "seed": seed, "recipe": {"epochs": 1},
              "gain_reference": ["mask=none"], "logger": {"name": "wandb", "project": "p"}, "sweep": "s"}
    metrics = {"status": "finished", "epochs": 1, "history": [{"epoch": 0, "test_top1": top1, "epoch_s": 1.0}],
               "final": {"best_top1": top1, "final_top1": top1}, "params": 10, "macs": 20}
    return {"config.yaml": yaml.safe_dump(config), "metrics.json": json.dumps(metrics)}


def plant(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_every_reader_lists_malformed_folders_as_unreadable_and_reports_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    multirun = tmp_path / "multirun"
    sweep = multirun / "mixed"
    for name, files in MALFORMED.items():
        plant(sweep / name, files)
    (sweep / "empty_folder").mkdir()
    os.symlink("loop", sweep / "loop")
    os.symlink(".", sweep / "self")
    for seed in (0, 1):
        plant(sweep / f"none_{seed}", finished(seed, "none", None, 50.0 + seed))
        plant(sweep / f"gmm_wide_{seed}", finished(seed, "gmm", [10.0, 10.0], 60.0 + seed))
        plant(sweep / f"gmm_narrow_{seed}", finished(seed, "gmm", [3.0, 1.0], 55.0 + seed))
    # the paper grid's and an ablation's own folders, malformed
    grid = paper_grid.jobs(Namespace(overrides=[], models="vit", masks="none,gmm", datasets="cifar10", seeds="0",
                                     multirun=str(multirun), sweep="paper"))
    pooling = ablations.jobs("pooling", [], multirun)
    for job, files in zip(grid + pooling[:2], MALFORMED.values()):
        plant(job["dir"], files)

    assert table.main([str(multirun)]) == 0
    text = capsys.readouterr().out
    assert "mask.sigma_init=[10.0,10.0]" in text and "mask.sigma_init=[3.0,1.0]" in text
    for name in MALFORMED:
        if name != "config_only":
            assert f"unreadable: {sweep / name}: " in text, name
    assert f"unreadable: {sweep / 'truncated_metrics'}: metrics.json is not valid JSON" in text
    assert f"unreadable: {sweep / 'list_config'}: config.yaml holds a list, not a config" in text

    assert status.main([str(multirun)]) == 0
    text = capsys.readouterr().out
    assert "unreadable: metrics.json has the wrong shape: a list where a record" in text
    assert "8 unreadable" in text and "6 finished" in text

    dashboard.main([str(sweep)])
    text = capsys.readouterr().out
    assert f"{sweep / 'empty_metrics'} left out, unreadable: metrics.json is not valid JSON (empty" in text

    assert paper_grid.main(["--dry", "--models", "vit", "--masks", "none,gmm", "--datasets", "cifar10",
                            "--multirun", str(multirun)]) == 0
    text = capsys.readouterr().out
    assert "unreadable: metrics.json is not valid JSON" in text and "2 unreadable" in text

    assert ablations.main(["--dry", "--only", "pooling", "--multirun", str(multirun)]) == 0
    assert "pooling" in capsys.readouterr().out
