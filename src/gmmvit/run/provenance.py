"""What made a run's numbers: the harness (version, git commit, whether the tree was dirty), the
software (python, torch, torchvision, timm, CUDA, cuDNN), the device (name, count), the host and the
command line. Recorded in ``metrics.json`` as ``environment`` and in the run's W&B config; ``make
table`` lists the environments under each table (``environment_label``).

The harness is the code that runs, wherever it is imported from: its commit only where git tracks
gmmvit's own files (an installed copy inside some other repository, a user's project with its venv,
has that repository's commit, not gmmvit's), its version from the ``pyproject.toml`` of the source
tree it runs from (an editable install's metadata keeps the version it was installed at; a
``PYTHONPATH`` checkout has none of its own), else from the installed metadata."""

from __future__ import annotations

import platform
import re
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

import gmmvit

PACKAGE = Path(gmmvit.__file__).resolve().parent  # src/gmmvit in a source tree


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _source_tree_version() -> Optional[str]:
    """The version the ``pyproject.toml`` of the source tree gmmvit runs from (``src/gmmvit``'s tree)
    declares for gmmvit, or None: no such file there (an installed copy), or it is another project's."""
    try:
        text = (PACKAGE.parent.parent / "pyproject.toml").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    project = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    fields = dict(re.findall(r'^(name|version)\s*=\s*"([^"]*)"', project.group(1), re.M)) if project else {}
    return fields.get("version") if fields.get("name") == "gmmvit" else None


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _tracks_gmmvit() -> bool:
    """Whether the git work tree around the package tracks the package's own files: not so for a copy
    installed (or unpacked) inside some other repository, which git finds around it all the same."""
    return _git("ls-files", "--error-unmatch", "--", "__init__.py") is not None


def environment(device) -> dict:
    """The environment of a run on ``device`` (a ``torch.device``)."""
    import torch  # here, not at the top: make table reads environment_label without torch

    tracked = _tracks_gmmvit()
    status = _git("status", "--porcelain", "--untracked-files=no") if tracked else None
    cuda = device.type == "cuda"
    return {"gmmvit": _source_tree_version() or _version("gmmvit"),
            "commit": _git("rev-parse", "HEAD") if tracked else None,
            "dirty": None if status is None else bool(status),
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": _version("torchvision"),
            "timm": _version("timm"), "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
            "device_count": torch.cuda.device_count() if cuda else 1,
            "device": str(device), "host": socket.gethostname(), "command": shlex.join(sys.argv)}


def record_environment(record, tracker, device) -> dict:
    """The run's environment into ``metrics.json`` and its W&B config."""
    env = environment(device)
    record.update(environment=env)
    tracker.log_config(environment=env)
    return env


def environment_label(env: Optional[dict]) -> str:
    """One line naming an environment: ``gmmvit 0.1.0 @1a2b3c4 (dirty), python 3.11.2, torch 2.5.1, ...``:
    what tells two environments apart in ``make table``. The host and the command line are left out:
    the runs of one sweep on a cluster land on many hosts, each with its own command."""
    if not env:
        return "not recorded (a run from before gmmvit recorded its environment)"
    commit = env.get("commit")
    harness = f"gmmvit {env.get('gmmvit')}" + (f" @{commit[:7]}" if commit else " (no git commit)")
    if env.get("dirty"):
        harness += " (dirty)"
    parts = [harness, f"python {env.get('python')}", f"torch {env.get('torch')}",
             f"torchvision {env.get('torchvision')}", f"timm {env.get('timm')}"]
    if env.get("cuda"):
        parts += [f"CUDA {env['cuda']}", f"cuDNN {env.get('cudnn')}"]
    parts.append(f"{env.get('device_count')} x {env.get('device_name')}")
    return ", ".join(parts)
