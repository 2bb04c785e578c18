"""Experiment tracking: Weights & Biases, online when it can be, offline when not, never fatal.

With no API key or no network the run is logged offline into ``<run_dir>/wandb``
(one notice line); ``wandb sync <run_dir>/wandb/offline-run-*`` uploads it later.
Any W&B failure turns the tracker off for the rest of the run and training goes on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _wandb_reachable(timeout: float = 2.0) -> bool:
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class Tracker:
    """No-op tracker (``logger=none``); the W&B one overrides every method."""

    def log_epoch(self, row: dict) -> None: ...
    def log_summary(self, **summary) -> None: ...
    def log_images(self, images: dict[str, Any], step: Optional[int] = None) -> None: ...
    def finish(self, failed: bool = False) -> None: ...
    @property
    def run_id(self) -> Optional[str]:
        return None


class WandbTracker(Tracker):
    def __init__(self, cfg: DictConfig, run_dir: Path, run_id: Optional[str], meta: dict):
        import wandb

        self.wandb = wandb
        mode = cfg.logger.mode
        if mode == "auto":
            mode = "online" if _has_api_key() and _wandb_reachable() else "offline"
            if mode == "offline":
                print("[gmmvit] W&B: no API key or no network, logging offline "
                      f"(sync later: wandb sync {run_dir}/wandb/offline-run-*)", flush=True)
        config = _flatten(OmegaConf.to_container(cfg, resolve=True))
        tags = [f"{k}={meta[k]}" for k in ("model", "mask", "dataset", "seed") if k in meta]
        self.run = wandb.init(
            project=cfg.logger.project, entity=cfg.logger.entity, mode=mode, dir=str(run_dir),
            id=run_id, resume="allow", group=meta.get("sweep"),
            job_type=f"{meta.get('model')}-{meta.get('mask')}", tags=tags,
            name=meta.get("name"), config=config, reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off", init_timeout=60))
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        self.run.define_metric("test/top1", summary="max,last", step_metric="epoch")
        self.run.define_metric("train/loss", summary="min,last", step_metric="epoch")

    @property
    def run_id(self) -> Optional[str]:
        return self.run.id

    def log_epoch(self, row: dict) -> None:
        self.run.log({"epoch": row["epoch"], "train/loss": row["train_loss"], "test/top1": row["test_top1"],
                      "lr": row["lr"], "train/img_per_s": row["img_per_s"]})

    def log_summary(self, **summary) -> None:
        for k, v in summary.items():
            self.run.summary[k] = v

    def log_images(self, images: dict[str, Any], step: Optional[int] = None) -> None:
        payload = {k: self.wandb.Image(v) for k, v in images.items()}
        if step is not None:
            payload["epoch"] = step
        self.run.log(payload)

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class _Guarded(Tracker):
    """Turns any tracker exception into one warning and a no-op for the rest of the run."""

    def __init__(self, inner: Tracker):
        self.inner = inner

    def _call(self, name, *args, **kwargs):
        if self.inner is None:
            return None
        try:
            return getattr(self.inner, name)(*args, **kwargs)
        except Exception as exc:
            print(f"[gmmvit] W&B {name} failed ({type(exc).__name__}: {exc}); tracking off for this run",
                  flush=True)
            self.inner = None

    def log_epoch(self, row):
        self._call("log_epoch", row)

    def log_summary(self, **summary):
        self._call("log_summary", **summary)

    def log_images(self, images, step=None):
        self._call("log_images", images, step)

    def finish(self, failed=False):
        self._call("finish", failed)

    @property
    def run_id(self):
        return self.inner.run_id if self.inner is not None else None


def build_tracker(cfg: DictConfig, run_dir: Path, run_id: Optional[str], meta: dict) -> Tracker:
    if cfg.logger.name != "wandb":
        return Tracker()
    try:
        return _Guarded(WandbTracker(cfg, run_dir, run_id, meta))
    except Exception as exc:
        print(f"[gmmvit] W&B could not start ({type(exc).__name__}: {exc}); training without it", flush=True)
        return Tracker()
