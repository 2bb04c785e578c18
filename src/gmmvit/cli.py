"""Command-line glue: Hydra resolvers and the one-line error policy."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from gmmvit.data import DatasetUnavailable
from gmmvit.models.common import ConfigError
from gmmvit.records import CheckpointError

# errors whose message already names the fix: printed as one line, exit code 2
USER_ERRORS = (DatasetUnavailable, ConfigError, CheckpointError)


def run_name(override_dirname: str) -> str:
    return override_dirname or "defaults"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)


def guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as exc:
        print(f"gmmvit: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
