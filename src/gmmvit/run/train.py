"""``train(cfg)``: the one function every run goes through, read top to bottom.

A run lives in one folder (``cfg.run_dir``, chosen by Hydra from the sweep name
and the overrides). It resumes from its own checkpoint when relaunched, skips
itself when already finished, and records a failure (NaN loss) with its reason
instead of crashing the sweep.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from gmmvit.data import resident
from gmmvit.data.datasets import load_splits
from gmmvit.data.sampling import no_full_batch
from gmmvit.errors import CheckpointError, ConfigError
from gmmvit.nn.attention import use_attention
from gmmvit.nn.complexity import count_macs, count_params
from gmmvit.nn.kernels import paths_taken
from gmmvit.run import devices, identity, runlock
from gmmvit.run.compiling import Compiled
from gmmvit.run.ending import recorded_end, signals_held
from gmmvit.run.figures import MaskFigures
from gmmvit.run.loaders import eval_loader, run_splits, training_loader
from gmmvit.run.profiling import StepProfiler
from gmmvit.run.progress import Progress, epoch_label, epoch_line, finished_line, result_text
from gmmvit.run.provenance import record_environment
from gmmvit.run.recipe import build_criterion, build_mixup, build_optimizer, build_scheduler
from gmmvit.run.records import (STATUS_FAILED, STATUS_FINISHED, STATUS_RUNNING, RunRecord, check_writable,
                                load_checkpoint, remove_temporaries, rng_state, save_checkpoint, set_rng_state)
from gmmvit.run.repair import continue_from, usable_record
from gmmvit.run.selection import BestWeights, selection_metric, validation_figures
from gmmvit.run.step import build_step, step_graph_setting
from gmmvit.run.tracking import build_tracker


DIVERGENCE_CHECK_EVERY = 10  # steps


class TrainingDiverged(RuntimeError):
    pass


def _without_name(node: DictConfig) -> dict:
    d = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    d.pop("name", None)
    return d


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """The run's network: its model, each masked layer with its own mask, on the attention path
    ``cfg.attention`` asks for."""
    ds = cfg.dataset
    mask_factory = instantiate(_without_name(cfg.mask))
    model = instantiate(_without_name(cfg.model), img_size=ds.img_size, in_chans=ds.channels,
                        num_classes=ds.num_classes, mask=mask_factory)
    return use_attention(model, cfg.get("attention", "auto"))


def seed_everything(seed: int, deterministic: bool) -> None:
    _seed_generators(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _seed_generators(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


DATA_STREAM = 1  # the spawn key that sets a run's data draws apart from its model's init


def seed_data_stream(seed: int) -> None:
    """Start a run's data draws (augmentation, Mixup/CutMix, the loader's worker seeds) from its
    seed alone, whatever building the model drew: a fused member, whose model is built with the
    others', then draws what the run alone draws. A seed of its own, not ``seed`` again, so the
    first augmentation draws are not the init's first draws."""
    _seed_generators(int(np.random.SeedSequence(seed, spawn_key=(DATA_STREAM,)).generate_state(1)[0]))


@torch.no_grad()
def evaluate(model, loader, device, autocast) -> float:
    model.eval()
    correct = total = 0
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        correct += (logits.argmax(1) == targets).sum().item()
        total += targets.numel()
    return 100.0 * correct / max(total, 1)


def fast_paths_used(compiled: Compiled, device: torch.device, bf16: bool, attention_paths: set,
                    train_loader, train_step) -> dict:
    """Which fast paths the run actually took (a silent fallback must show): compiled or not, the
    attention kernels, where the data lives, the precision. Recorded after the first epoch."""
    return {**compiled.report(),
            "attention": "+".join(sorted(attention_paths)) or "none",
            "data": "device" if isinstance(train_loader, resident.GpuBatches) else "loader",
            "precision": "bf16" if bf16 else "fp32", "step": train_step.kind, "device": str(device)}


def _finished(record: RunRecord) -> bool:
    if record.status == STATUS_FINISHED:
        shown = result_text(record.data["final"], record.data.get("epochs"))
        print(f"[gmmvit] {record.run_dir} already finished: {shown}; skipping", flush=True)
    return record.status == STATUS_FINISHED


def train(cfg: DictConfig) -> dict:
    """Train the run ``cfg`` describes (a config composed from conf/ and checked by
    ``gmmvit.config.checks``, as the Hydra entry point does before each job)."""
    run_dir = Path(cfg.run_dir)
    twin = identity.twin_of(cfg, run_dir)
    if twin is not None:  # this run, trained under another spelling of its overrides: one run, one folder
        print(f"[gmmvit] {run_dir.name}: {twin} already holds this run (the same config, its overrides "
              "spelled another way); continuing there, its folder linked from this job's", flush=True)
        identity.link_to_twin(run_dir, twin)
        cfg = cfg.copy()
        cfg.run_dir = str(twin)
        run_dir = twin
    try:
        identity.same_run_or_refuse(cfg, run_dir)  # another config's folder: one line, nothing written
    except identity.DifferentRun as exc:
        identity.refuse_or_skip(exc)
        return {}
    record = RunRecord(run_dir)
    if _finished(record):
        return record.data
    check_writable(run_dir)  # an unwritable output folder ends here, before any data or training
    try:
        lock = runlock.acquire(run_dir)  # one trainer per run folder
    except runlock.Held as holder:
        print(f"[gmmvit] {run_dir.name} is being trained by {holder}; skipping it here", flush=True)
        return RunRecord(run_dir).data
    with lock:
        record = RunRecord(run_dir)  # as the previous holder left it
        if _finished(record):
            return record.data
        remove_temporaries(run_dir)  # a killed trainer's half-written files
        record = usable_record(record)  # an unreadable metrics.json: rebuilt from the checkpoint, or one line
        # stopped / failed recorded, and its W&B run ended so, before the lock goes
        with recorded_end([(record, cfg.recipe.epochs)], run_dir.name) as trackers:
            return _train(cfg, run_dir, record, trackers)


def _train(cfg: DictConfig, run_dir: Path, record: RunRecord, trackers: dict) -> dict:
    identity.record_config(cfg, run_dir)  # once, as the run starts

    # --- machine --------------------------------------------------------------------------
    runs_per_gpu = cfg.get("runs_per_gpu", 1)
    device = devices.pick_device(cfg.device, runs_per_gpu)  # device=auto: a free GPU slot of this machine
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed, cfg.deterministic)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    # no cast cache: a step captured as a CUDA graph must not keep casts made outside it
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16,  # noqa: E731
                                      cache_enabled=False)
    recipe, ds = cfg.recipe, cfg.dataset

    # the model first: a size it cannot take ends the run before any data is loaded
    model = build_model(cfg)  # FlexAttention for the mul mask on CUDA (cfg.attention)
    compiled = Compiled(model, cfg.get("compile", "auto"), device)  # lazy: compiles at step 1
    # step_graph=true where it cannot apply ends here too, before any data is read
    step_graph = step_graph_setting(cfg.step_graph, device, compiled.mode, recipe.drop_last)

    # --- data -----------------------------------------------------------------------------
    train_split, val_split, test_split = run_splits(cfg, load_splits(ds))
    workers = devices.loader_workers(cfg.workers, device, runs_per_gpu)
    # CIFAR-sized data on the GPU as uint8, augmented per batch there, where data_on_gpu puts it
    train_loader, sampler = training_loader(cfg, train_split, device, workers)
    test_loader = eval_loader(test_split, cfg, device, workers)
    val_loader = eval_loader(val_split, cfg, device, workers) if val_split is not None else None
    if len(train_loader) == 0:
        raise ConfigError(no_full_batch(cfg, len(train_split)))

    # --- model and recipe -----------------------------------------------------------------
    params, macs = count_params(model), count_macs(model, ds.img_size, ds.channels)
    model.to(device)
    optimizer = build_optimizer(recipe, model)
    scheduler = build_scheduler(recipe, optimizer, len(train_loader))
    mixup = build_mixup(recipe, ds.num_classes)
    criterion = build_criterion(recipe, mixup)
    train_step = build_step(step_graph, model, compiled.model, optimizer, criterion, autocast, recipe.grad_clip)

    # --- resume ---------------------------------------------------------------------------
    start_epoch, wall_before, wandb_id = 0, 0.0, None
    state = load_checkpoint(run_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, wall_before, wandb_id = state["epoch"], state["wall_s"], state.get("wandb_id")
        continue_from(record, state)  # epochs 0..N-1 recorded, or rebuilt from the checkpoint, or one line
        print(f"[gmmvit] resuming {run_dir.name} after {epoch_label(start_epoch - 1, recipe.epochs)}", flush=True)
    elif any(r["epoch"] >= 1 for r in record.history):
        # epochs were recorded, so checkpoints were written: starting over would overwrite history
        raise CheckpointError(f"{run_dir} records {len(record.history)} epochs but has no checkpoint; "
                              f"restore checkpoint.pt or delete {run_dir} to retrain this run from scratch")
    best_weights = BestWeights(run_dir, record, selection_metric(cfg))  # best.pt
    best_weights.start(state)
    meta = {"model": cfg.model.name, "mask": cfg.mask.name, "dataset": ds.name, "seed": cfg.seed,
            "sweep": cfg.sweep, "name": run_dir.name}
    tracker = trackers[run_dir] = build_tracker(cfg, run_dir, wandb_id, meta)  # stopped / failed: ended as recorded
    record.update(status=STATUS_RUNNING, reason=None, meta=meta, params=params, macs=macs,
                  epochs=recipe.epochs, wandb_id=tracker.run_id)
    tracker.begin(record.history)
    tracker.log_summary(params=params, macs=macs)
    record_environment(record, tracker, device)  # versions, commit, device, host, command line
    mask_figures = MaskFigures(cfg, model, run_dir, tracker)  # GMM/ELM: masks/epoch_XXX.png (+ W&B)
    mask_figures.start(start_epoch)

    # --- loop -----------------------------------------------------------------------------
    if state is not None:  # the data draws go on from the checkpoint, or start from the run's seed
        set_rng_state(state["rng"])
    else:
        seed_data_stream(cfg.seed)
    config = identity.as_recorded(cfg)
    profiler = StepProfiler(cfg.get("profile_steps"), run_dir, device)  # profile_steps=N: profile.md
    started = time.time()
    step = start_epoch * len(train_loader)
    progress = Progress(run_dir.name, recipe.epochs, len(train_loader), start_epoch)  # bar / ~10% log lines
    try:
        for epoch in range(start_epoch, recipe.epochs):
            model.train()
            sampler.set_epoch(epoch)
            t0, seen, loss_sum = time.time(), 0, 0.0
            progress.start_epoch(epoch)
            for images, targets in train_loader:
                images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                if mixup is not None:
                    images, targets = mixup(images, targets)
                loss = train_step(images, targets)  # forward, loss, backward, optimizer (gmmvit.run.step)
                loss_sum += loss * images.shape[0]
                # reading the loss on the host stalls a GPU: look only every few steps
                if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} in {epoch_label(epoch, recipe.epochs)} step {step}")
                step += 1
                scheduler.step_update(step)
                profiler.step()
                seen += images.shape[0]
                progress.step(seen, loss_sum)
            loss_sum = float(loss_sum)
            if not math.isfinite(loss_sum):
                raise TrainingDiverged(f"loss became {loss_sum} during {epoch_label(epoch, recipe.epochs)}")
            train_s = time.time() - t0
            paths_taken(model)  # eval is eager: every layer notes the path it takes
            evaluated = time.time()
            top1 = evaluate(model, test_loader, device, autocast)
            eval_s = time.time() - evaluated
            if epoch == start_epoch:
                paths = fast_paths_used(compiled, device, use_bf16, paths_taken(model), train_loader, train_step)
                record.update(paths=paths)
                tracker.log_summary(**{f"paths/{k}": v for k, v in paths.items()})
                print(f"[gmmvit] {run_dir.name} ran on: " + ", ".join(f"{k}={v}" for k, v in paths.items()),
                      flush=True)
            row = {"epoch": epoch, "train_loss": loss_sum / seen, "test_top1": top1,
                   "lr": optimizer.param_groups[0]["lr"], "img_per_s": seen / train_s,
                   "train_s": train_s, "eval_s": eval_s, "epoch_s": train_s + eval_s}
            if val_loader is not None:
                row["val_top1"] = evaluate(model, val_loader, device, autocast)
            with signals_held():  # a stop waits for the epoch's row, checkpoint and best.pt alike
                record.add_epoch(row)
                tracker.log_epoch(row)
                mask_figures.after_epoch(epoch + 1)
                save_checkpoint(run_dir, {
                    "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state(),
                    "wall_s": wall_before + time.time() - started, "wandb_id": tracker.run_id,
                    "history": record.history,  # what metrics.json is rebuilt from, should it be lost
                    "config": config})  # what a relaunch compares against, should config.yaml be lost
                best_weights.after_epoch(row, model)
                # inside the held block: a stop's line follows the line of the epoch it recorded
                print(epoch_line(run_dir.name, row, recipe.epochs), flush=True)
    except TrainingDiverged as exc:
        progress.close()
        record.update(status=STATUS_FAILED, reason=str(exc))
        tracker.end(STATUS_FAILED, str(exc))
        print(f"[gmmvit] {run_dir.name} failed: {exc}", flush=True)
        return record.data

    history = record.history
    best = max(history, key=lambda r: r["test_top1"]) if history else None
    final = {"best_top1": best["test_top1"] if best else math.nan, "best_epoch": best["epoch"] if best else None,
             "final_top1": history[-1]["test_top1"] if history else math.nan,
             "params": params, "macs": macs, "wall_s": wall_before + time.time() - started,
             **validation_figures(history)}
    mask_figures.end(recipe.epochs)
    record.update(status=STATUS_FINISHED, final=final)
    tracker.log_summary(**{f"final/{k}": v for k, v in final.items()})
    tracker.end(STATUS_FINISHED)
    print(finished_line(run_dir.name, final, recipe.epochs), flush=True)
    return record.data
