"""Every run records what made its numbers, and make table lists those environments under the table."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from importlib import metadata

from conftest import REPO
from gmmvit.run.provenance import environment_label
from gmmvit.run.train import train
from gmmvit.sweeps import folders, table as table_lib

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32",
        "recipe.epochs=1", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=64",
        "limit_test=64", "threads=1", "logger=none"]
KEYS = {"gmmvit", "commit", "dirty", "python", "torch", "torchvision", "timm", "cuda", "cudnn", "device_name",
        "device_count", "device", "host", "command"}


def env(torch_version="2.5.1", commit="1a2b3c4d5e", dirty=False):
    return {"gmmvit": "0.1.0", "commit": commit, "dirty": dirty, "python": "3.11.2", "torch": torch_version,
            "torchvision": "0.20.1", "timm": "1.0.9", "cuda": "12.4", "cudnn": 90100,
            "device_name": "NVIDIA H200", "device_count": 1, "host": "node1", "command": "src/train.py -m"}


def test_a_run_records_the_harness_commit_software_device_host_and_command(compose_config, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    train(compose_config(TINY, run_dir=run_dir, data_dir=data_dir))
    recorded = json.loads((run_dir / "metrics.json").read_text())["environment"]
    assert set(recorded) == KEYS
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:   # a git checkout: its commit, and whether its tree was dirty
        assert recorded["commit"] == head.stdout.strip() and isinstance(recorded["dirty"], bool)
    else:                      # an exported tree (.ci/run's copy): no commit, said as such, not guessed
        assert recorded["commit"] is None and recorded["dirty"] is None
    assert recorded["command"] == shlex.join(sys.argv) and recorded["device"] == "cpu"
    assert recorded["torch"] and recorded["python"] == ".".join(map(str, sys.version_info[:3]))


def git(repo, *args):
    who = ["-c", "user.name=gmmvit tests", "-c", "user.email=tests@gmmvit.invalid", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", "-C", str(repo), *who, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def copy_of_gmmvit(into):
    shutil.copytree(REPO / "src" / "gmmvit", into / "gmmvit", ignore=shutil.ignore_patterns("__pycache__"))


def pyproject(folder, name, version):
    (folder / "pyproject.toml").write_text(f'[build-system]\nrequires = ["setuptools"]\n\n[project]\nname = "{name}"\n'
                                           f'version = "{version}"\n\n[tool.other]\nversion = "0.0.0"\n')


def committed_repo(repo):
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")


def environment_of(path, cwd):
    """The environment a run records when gmmvit is imported from ``path``."""
    script = ("import json, torch, gmmvit; from gmmvit.run.provenance import environment; "
              "print(json.dumps([gmmvit.__file__, environment(torch.device('cpu'))]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(path)))
    assert out.returncode == 0, out.stderr[-2000:]
    imported, recorded = json.loads(out.stdout.splitlines()[-1])
    assert imported == str(path / "gmmvit" / "__init__.py")
    return recorded


def source_checkout(tmp_path):
    """A clone of gmmvit as git holds it: its package under src/, its pyproject declaring 7.7.7."""
    checkout = tmp_path / "gmmvit"
    (checkout / "src").mkdir(parents=True)
    copy_of_gmmvit(checkout / "src")
    pyproject(checkout, "gmmvit", "7.7.7")
    committed_repo(checkout)
    return checkout


def test_a_source_checkout_records_its_own_commit_and_the_version_its_pyproject_declares(tmp_path):
    checkout = source_checkout(tmp_path)
    recorded = environment_of(checkout / "src", tmp_path)
    assert recorded["commit"] == git(checkout, "rev-parse", "HEAD") and recorded["dirty"] is False
    assert recorded["gmmvit"] == "7.7.7" != metadata.version("gmmvit")


def test_a_source_checkout_with_a_tracked_file_changed_records_it_dirty(tmp_path):
    checkout = source_checkout(tmp_path)
    with open(checkout / "src" / "gmmvit" / "catalog.py", "a") as f:
        f.write("# changed\n")
    assert environment_of(checkout / "src", tmp_path)["dirty"] is True


def test_gmmvit_installed_inside_another_projects_repository_records_neither_its_commit_nor_its_version(tmp_path):
    project = tmp_path / "their-project"
    project.mkdir()
    pyproject(project, "their-project", "3.0.0")
    (project / ".gitignore").write_text("lib/\n")
    committed_repo(project)
    (project / "lib").mkdir()
    copy_of_gmmvit(project / "lib")  # as pip installs it into a venv the project keeps beside its code
    recorded = environment_of(project / "lib", project)
    assert recorded["commit"] is None and recorded["dirty"] is None
    assert recorded["gmmvit"] == metadata.version("gmmvit")


def finished(mask, seed, environment):
    return folders.Run(path=None, model="vit", mask=mask, dataset="digits", seed=seed, state="finished", epochs=1,
                       done=1, best=90.0 + seed, final=90.0, params=1, macs=1, environment=environment)


def test_the_table_lists_every_environment_with_its_run_count_and_warns_of_a_mixed_cell():
    runs = [finished("none", 0, env()), finished("none", 1, env()), finished("gmm", 0, env()),
            finished("gmm", 1, env(torch_version="2.6.0", dirty=True)), finished("gmm", 2, None)]
    text, _ = table_lib.build(table_lib.Path("unused"), runs, write=False)
    lines = text.splitlines()
    assert f"- {environment_label(env())}: 3 runs" in lines
    assert f"- {environment_label(env(torch_version='2.6.0', dirty=True))}: 1 run" in lines
    assert "- not recorded (a run from before gmmvit recorded its environment): 1 run" in lines
    assert "- warning: vit/gmm/digits mixes 3 environments" in lines
    assert not any("vit/none/digits mixes" in line for line in lines)


def test_an_environment_line_names_commit_dirty_flag_versions_and_device():
    assert environment_label(env(dirty=True)) == (
        "gmmvit 0.1.0 @1a2b3c4 (dirty), python 3.11.2, torch 2.5.1, torchvision 0.20.1, timm 1.0.9, "
        "CUDA 12.4, cuDNN 90100, 1 x NVIDIA H200")
