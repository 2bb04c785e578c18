"""Experiment tracking: Weights & Biases, online when it can be, offline when not, never fatal.

With no API key or no network the run is logged offline into ``<run_dir>/wandb``
(one notice line); ``make sync`` uploads it later (``gmmvit.sweeps.sync``: each run's newest log).
Any W&B failure turns the tracker off for the rest of the run and training goes on.

One W&B run per job: group = sweep, job_type = ``<model>-<mask>``, tags model=, mask=,
dataset=, seed=; config = the flattened resolved config. The x axis is ``epoch`` = epochs
completed (1 after the first epoch; 0 for the initial mask figures). The summary holds
``test/top1_best`` (best top-1 over every epoch the run's record holds, resumes included) and
``test/top1_best_epoch`` (its epoch, same axis); with a validation split (the clean protocol) also
``val/top1_best``, its epoch and ``test/top1_at_best_val``, the test top-1 at that epoch, which is the
protocol's result (the first of equal epochs, as ``gmmvit.run.selection`` selects); params, macs, ``status`` and ``reason`` as
metrics.json says them, and ``final/*`` (as metrics.json: ``final/best_epoch`` there is the 0-based
history index). A W&B run ends as its record does: exit code 0 when finished, non-zero (W&B: failed)
when it failed or was stopped.
``read_offline_run`` reads an offline run's transaction log back (summary, history) without W&B.

``reopened`` opens a trained run's W&B run again for an analysis (``make eval``, ``make locality``) to
add its results to: with the config the training logged, never the analysis's own, and not at all
while a trainer holds the run folder.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from gmmvit.errors import CheckpointError
from gmmvit.run import runlock
from gmmvit.run.figures import PARAM_COLUMNS, recorded_snapshots
from gmmvit.run.identity import CONFIG, read_config
from gmmvit.run.records import METRICS, STATUS_FINISHED, STATUS_RUNNING, load_checkpoint, read_json, write_json

# The names runs log under. gmmvit.dashboard builds its panels from these same names, and its
# tests check them against what an offline run really logs.
EPOCH = "epoch"                        # the x axis: epochs completed
TOP1 = "test/top1"
TOP1_BEST = "test/top1_best"           # summary: the best top-1 so far
VAL_TOP1 = "val/top1"                   # dataset.val_fraction > 0: the held-out validation split
VAL_TOP1_BEST = "val/top1_best"         # summary, with a validation split: the best val top-1 so far
TOP1_AT_BEST_VAL = "test/top1_at_best_val"  # summary: the test top-1 at that epoch (the clean protocol's)
TRAIN_LOSS = "train/loss"
LR = "lr"
IMG_PER_S = "train/img_per_s"
EPOCH_S = "train/epoch_s"
PARAMS, MACS = "params", "macs"        # summary
MASK_IMAGE = "masks/central_query"
MASK_PARAMS = "masks/gmm_params"       # GMM: one row per layer x head x kernel with sigma, alpha
MASK_SIGMA, MASK_ALPHA = "masks/sigma", "masks/alpha"

LOGGED = "wandb_logged.json"           # in the run folder: the summary and images logged, for a new log

# W&B's own layout in a run folder (wandb.init(dir=run_dir)), read by make sync and make dashboard:
# one folder per process under wandb/, offline-run-YYYYMMDD_HHMMSS-<id> or, online,
# run-YYYYMMDD_HHMMSS-<id>, each holding its transaction log run-<id>.wandb
WANDB_DIR = "wandb"
OFFLINE_LOG = "offline-run-"
ONLINE_LOG = "run-"
TRANSACTION_LOG = "run-*.wandb"


def offline_logs(run_dir: Path) -> list[Path]:
    """The folders the run's offline W&B processes wrote."""
    return sorted((Path(run_dir) / WANDB_DIR).glob(f"{OFFLINE_LOG}*"))


def online_logs(run_dir: Path) -> list[Path]:
    """The folders the run's online W&B processes wrote."""
    return sorted((Path(run_dir) / WANDB_DIR).glob(f"{ONLINE_LOG}*"))


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: the config as W&B and the table see it."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def server() -> str:
    """The W&B server runs log to, as host:port (``WANDB_BASE_URL``: a local server has its own)."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    return f"{url.hostname}:{url.port or (80 if url.scheme == 'http' else 443)}"


def wandb_reachable(timeout: float = 2.0) -> bool:
    host, port = server().rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_mode(mode: str, run_dir: Path) -> str:
    """``auto``: online with an API key and a reachable server, else offline with one notice line."""
    if mode != "auto":
        return str(mode)
    if has_api_key() and wandb_reachable():
        return "online"
    print("[gmmvit] W&B: no API key or no network, logging offline "
          f"(upload later: make sync SWEEP={run_dir})", flush=True)
    return "offline"


class Tracker:
    """No-op tracker (``logger=none``); the W&B one overrides every method."""

    def begin(self, history: list[dict]) -> None: ...
    def replay(self, history: list[dict]) -> None: ...
    def log_epoch(self, row: dict) -> None: ...
    def log_summary(self, **summary) -> None: ...
    def log_config(self, **config) -> None: ...
    def log_images(self, images: dict[str, Any], step: Optional[int] = None) -> None: ...
    def log_mask_snapshot(self, image_path, columns: list, rows: list, epochs_done: int) -> None: ...
    def end(self, status: Optional[str], reason: Optional[str] = None, exit_code: Optional[int] = None) -> None: ...
    @property
    def run_id(self) -> Optional[str]:
        return None


class WandbTracker(Tracker):
    def __init__(self, cfg: DictConfig, run_dir: Path, run_id: Optional[str], meta: dict, alongside: bool = False,
                 config: Optional[dict] = None):
        import wandb

        self.wandb = wandb
        mode = resolve_mode(cfg.logger.mode, run_dir)
        if config is None:
            config = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
        tags = [f"{k}={meta[k]}" for k in ("model", "mask", "dataset", "seed") if k in meta]
        self.run = wandb.init(
            project=cfg.logger.project, entity=cfg.logger.entity, mode=mode, dir=str(run_dir),
            id=run_id, resume="allow", group=meta.get("sweep"),
            job_type=f"{meta.get('model')}-{meta.get('mask')}", tags=tags,
            name=meta.get("name"), config=config,
            reinit="create_new" if alongside else "finish_previous",  # alongside: a fused group's members
            settings=wandb.Settings(silent=True, console="off", init_timeout=60))
        self.run.define_metric(EPOCH)
        self.run.define_metric("*", step_metric=EPOCH)
        self.run.define_metric(TOP1, summary="max,last", step_metric=EPOCH)
        self.run.define_metric(TRAIN_LOSS, summary="min,last", step_metric=EPOCH)
        self.best: Optional[float] = None
        self.best_val: Optional[float] = None
        self.logged = Path(run_dir) / LOGGED

    @property
    def run_id(self) -> Optional[str]:
        return self.run.id

    def begin(self, history: list[dict]) -> None:
        """Training starts, or resumes after ``history``'s epochs (the run's record). The best so far
        comes from the record, not from W&B: an offline run cannot read its own summary back, and a
        resumed offline run is a second log whose summary ``wandb sync`` lays over the first's."""
        self.replay(history)
        self.log_summary(status=STATUS_RUNNING, reason=None)

    def replay(self, history: list[dict]) -> None:
        """A log that does not continue the run on a W&B server (offline, or online where the server
        never saw it) is first given everything the run's folder records of it: each epoch's row and
        mask snapshot (``masks/``) in the order training logged them, then every other image and
        summary value any earlier launch or analysis logged (``LOGGED``). Syncing a log replaces the
        run's earlier ones on the server (wandb#3841, #5865: a second offline log of one run id is
        not appended to the first), so each log must hold the whole run."""
        if self.run.resumed or not history:  # this log continues the server's run, or no epoch came before
            for row in history:
                self._note_best(row)
            return
        done = max((row["epoch"] + 1 for row in history), default=0)
        snapshots = recorded_snapshots(self.logged.parent, done)
        if 0 in snapshots:
            self.log_mask_snapshot(snapshots[0][0], PARAM_COLUMNS, snapshots[0][1], 0)
        for row in history:
            self.log_epoch(row)
            if (epochs := row["epoch"] + 1) in snapshots:
                self.log_mask_snapshot(snapshots[epochs][0], PARAM_COLUMNS, snapshots[epochs][1], epochs)
        earlier = self._kept()
        for key, image in earlier["images"].items():
            if isinstance(image, dict) and (path := self.logged.parent / str(image.get("path"))).is_file():
                self.log_images({key: str(path)}, image.get("step"))
        self.log_summary(**earlier["summary"])

    def _note_best(self, row: dict) -> None:
        if self.best is None or row["test_top1"] > self.best:
            self.best = row["test_top1"]
            self.run.summary[TOP1_BEST] = row["test_top1"]
            self.run.summary[f"{TOP1_BEST}_epoch"] = row["epoch"] + 1
        if row.get("val_top1") is not None and (self.best_val is None or row["val_top1"] > self.best_val):
            self.best_val = row["val_top1"]
            self.run.summary[VAL_TOP1_BEST] = row["val_top1"]
            self.run.summary[f"{VAL_TOP1_BEST}_epoch"] = row["epoch"] + 1
            self.run.summary[TOP1_AT_BEST_VAL] = row["test_top1"]

    def log_epoch(self, row: dict) -> None:
        self.run.log({EPOCH: row["epoch"] + 1, TRAIN_LOSS: row["train_loss"], TOP1: row["test_top1"],
                      LR: row["lr"], IMG_PER_S: row["img_per_s"], EPOCH_S: row.get("epoch_s"),
                      **({VAL_TOP1: row["val_top1"]} if "val_top1" in row else {})})
        self._note_best(row)

    def log_summary(self, **summary) -> None:
        for k, v in summary.items():
            self.run.summary[k] = v
        self._keep(summary=summary)

    def _keep(self, summary: Optional[dict] = None, images: Optional[dict] = None) -> None:
        """What was logged, kept in the run's folder for ``replay``: read again first, as an analysis
        of the run may have added to it since this tracker began."""
        kept = self._kept()
        write_json(self.logged, {"summary": {**kept["summary"], **(summary or {})},
                                 "images": {**kept["images"], **(images or {})}})

    def _kept(self) -> dict:
        """``LOGGED`` as ``{"summary": {...}, "images": {...}}``; a damaged file counts as empty (what it
        held is on the W&B logs written so far), never as a reason to stop tracking."""
        kept = read_json(self.logged)
        kept = kept if isinstance(kept, dict) else {}
        return {part: kept[part] if isinstance(kept.get(part), dict) else {} for part in ("summary", "images")}

    def log_config(self, **config) -> None:
        self.run.config.update(flatten(config), allow_val_change=True)

    def log_images(self, images: dict[str, Any], step: Optional[int] = None) -> None:
        payload = {k: self.wandb.Image(v) for k, v in images.items()}
        if step is not None:
            payload[EPOCH] = step
        self.run.log(payload)
        # relative to the run folder, so a sweep folder moved or copied whole keeps its images
        self._keep(images={k: {"path": os.path.relpath(Path(v).resolve(), self.logged.parent.resolve()),
                               "step": step} for k, v in images.items()})

    def log_mask_snapshot(self, image_path, columns: list, rows: list, epochs_done: int) -> None:
        wandb = self.wandb
        payload = {EPOCH: epochs_done,
                   MASK_IMAGE: wandb.Image(str(image_path), caption=f"after {epochs_done} epoch(s)")}
        if rows:
            payload[MASK_PARAMS] = wandb.Table(columns=list(columns), data=[list(r) for r in rows])
            i_sigma, i_alpha = columns.index("sigma"), columns.index("alpha")
            payload[MASK_SIGMA] = wandb.Histogram([r[i_sigma] for r in rows])
            payload[MASK_ALPHA] = wandb.Histogram([r[i_alpha] for r in rows])
        self.run.log(payload)

    def end(self, status: Optional[str], reason: Optional[str] = None, exit_code: Optional[int] = None) -> None:
        """Close the W&B run as the record ends: its status and reason in the summary; the exit code is
        what W&B shows as finished (0) or failed (any other), 1 unless the caller has the shell's."""
        self.log_summary(status=status, reason=reason)
        self.run.finish(exit_code=exit_code if exit_code is not None else 0 if status == STATUS_FINISHED else 1)


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

    def begin(self, history):
        self._call("begin", history)

    def replay(self, history):
        self._call("replay", history)

    def log_epoch(self, row):
        self._call("log_epoch", row)

    def log_summary(self, **summary):
        self._call("log_summary", **summary)

    def log_config(self, **config):
        self._call("log_config", **config)

    def log_images(self, images, step=None):
        self._call("log_images", images, step)

    def log_mask_snapshot(self, image_path, columns, rows, epochs_done):
        self._call("log_mask_snapshot", image_path, columns, rows, epochs_done)

    def end(self, status, reason=None, exit_code=None):
        self._call("end", status, reason, exit_code)

    @property
    def run_id(self):
        return self.inner.run_id if self.inner is not None else None


def build_tracker(cfg: DictConfig, run_dir: Path, run_id: Optional[str], meta: dict,
                  alongside: bool = False, config: Optional[dict] = None) -> Tracker:
    """The run's tracker; ``alongside``: one of several runs one process logs at once (fused);
    ``config``: the flattened config to log, ``cfg``'s unless given."""
    if cfg.logger.name != "wandb":
        return Tracker()
    try:
        return _Guarded(WandbTracker(cfg, run_dir, run_id, meta, alongside, config))
    except Exception as exc:
        print(f"[gmmvit] W&B could not start ({type(exc).__name__}: {exc}); training without it", flush=True)
        return Tracker()


def logged_config(run_dir: Path, metrics: dict) -> dict:
    """The flattened config a run's training logged to W&B: its latest launch's, as the newest
    checkpoint records it (``config.yaml`` holds the first launch's, whose speed settings a relaunch
    may have changed), else ``config.yaml``'s; and the environment ``metrics.json`` records, which
    ``record_environment`` logged with it."""
    try:
        config = (load_checkpoint(run_dir) or {}).get("config")
    except CheckpointError:
        config = None
    if not isinstance(config, dict):
        config, _ = read_config(Path(run_dir) / CONFIG)
    logged = flatten(config or {})
    if metrics.get("environment"):
        logged.update(flatten({"environment": metrics["environment"]}))
    return logged


@contextmanager
def reopened(cfg: DictConfig, run_dir: Path, result: Path) -> Iterator[Tracker]:
    """The W&B run that trained ``run_dir``, opened again to add an analysis to (``result``: the file
    that holds it), then ended as the run's record says. It is given the config the training logged:
    W&B takes a resumed run's config as its new one (an offline log synced lays its config over the
    training's), and the analysis's own settings (another test set, a precision) are no run's config.
    A no-op tracker where the run has no W&B run, or where a trainer holds the folder: that trainer
    logs to the W&B run itself, and would find it ended under it (one line says so)."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / METRICS) or {}
    if not metrics.get("wandb_id") or cfg.logger.name != "wandb":
        yield Tracker()
        return
    held = runlock.trainer(run_dir)
    if held is not None and held[0]:
        print(f"[gmmvit] {run_dir} is being trained ({held[1]}), which logs to its W&B run: W&B left alone, "
              f"the result is in {result}", flush=True)
        yield Tracker()
        return
    tracker = build_tracker(cfg, run_dir, metrics["wandb_id"], metrics.get("meta") or {},
                            config=logged_config(run_dir, metrics))
    tracker.replay(metrics.get("history") or [])
    yield tracker
    tracker.end(metrics.get("status"), metrics.get("reason"))


# --- reading an offline run back (tests, checks) without a W&B server --------------------------
_LOG_BLOCK = 32768
_LOG_HEADER = 7        # ":W&B", magic 0xBEE1, version


def _log_records(path: Path):
    """The raw records of a W&B transaction log (``run-<id>.wandb``, a leveldb-style log)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, pending = _LOG_HEADER, b""
    while pos + 7 <= len(data):
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:               # zero padding to the end of a block
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:                               # full
            yield chunk
        elif kind == 2:                             # first
            pending = chunk
        elif kind == 3:                             # middle
            pending += chunk
        elif kind == 4:                             # last
            yield pending + chunk
            pending = b""


def _set_nested(d: dict, keys: list, value) -> None:
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def read_offline_run(run_path: Path) -> dict:
    """``{"run", "summary", "history", "config", "complete", "exit_code"}`` of an offline run
    (one of ``offline_logs``).

    ``complete`` says the exit record is there (``exit_code`` is its code): W&B's service may still be
    writing the log for a moment after ``run.finish()`` returns.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    run_path = Path(run_path)
    log = next(run_path.glob(TRANSACTION_LOG))
    summary: dict = {}
    history: list[dict] = []
    config: dict = {}
    run: dict = {}
    complete, exit_code = False, None
    for raw in _log_records(log):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                keys = list(item.nested_key) or [item.key]
                _set_nested(summary, keys, json.loads(item.value_json))
        elif kind == "history":
            row = {}
            for item in record.history.item:
                row["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
            history.append(row)
        elif kind == "exit":
            complete, exit_code = True, record.exit.exit_code
        if kind == "run":
            r = record.run
            run = {"id": r.run_id, "project": r.project, "group": r.run_group, "job_type": r.job_type,
                   "tags": list(r.tags), "name": r.display_name}
        if kind in ("run", "config"):
            cfg = record.run.config if kind == "run" else record.config
            for item in cfg.update:
                config[item.key] = json.loads(item.value_json)
    return {"run": run, "summary": summary, "history": history, "config": config, "complete": complete,
            "exit_code": exit_code}
