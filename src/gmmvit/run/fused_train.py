"""``train_group(cfgs)``: runs of one architecture trained fused in one process, each still a run.

The group's first config is the job that trains it. Every other member joins only where the job
can take it over whole: its folder holds that member's own config, it is not finished, its lock is
free (a member another process trains stays with that process), its record and checkpoint are
readable, and its checkpoint is at the job's own epoch (members at the same epoch share the
step's schedule: one scheduler, one AdamW step count). A member that cannot join is left to its
own job, which trains it alone or in a group of its own; a job with nobody to join trains alone
through ``train()``. So a run is trained once whichever job of the sweep gets to it first, on any
launcher: fusing changes how fast runs are trained, never which.

Each member keeps what ``train()`` gives a run: its folder, ``config.yaml``, ``metrics.json`` (the
same rows), ``checkpoint.pt`` and ``best.pt`` holding its own unstacked weights and its own slice
of AdamW's state (``train()`` resumes it, and a group resumes what ``train()`` wrote), its lock,
its W&B run, its progress lines, and its end: a member whose loss is not finite is marked failed
with its reason and drops out while the others train on; Ctrl-C or SIGTERM marks every member
``stopped``; an exception marks every member ``failed``.

Evaluation, ``best.pt`` and the mask figures run each member's own unfused model, loaded with its
weights after each epoch. Each member's data is the unfused run's (``gmmvit.run.loaders``: its
splits, its order and, where ``data_on_gpu`` puts it there, its split on the device).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from gmmvit.data import resident
from gmmvit.data.datasets import load_splits
from gmmvit.data.sampling import no_full_batch
from gmmvit.errors import CheckpointError, ConfigError
from gmmvit.nn.complexity import count_macs, count_params
from gmmvit.run import devices, identity, runlock
from gmmvit.run.compiling import Compiled
from gmmvit.run.ending import recorded_end, signals_held
from gmmvit.run.figures import MaskFigures
from gmmvit.run.fused import (FusedModel, FusedStep, MemberRandom, build_member, drop_path_sites,
                              seed_group_stream, stacked_batches)
from gmmvit.run.loaders import eval_loader, run_splits, training_loader
from gmmvit.run.profiling import StepProfiler
from gmmvit.run.progress import Progress, epoch_label, epoch_line, finished_line
from gmmvit.run.provenance import record_environment
from gmmvit.run.recipe import build_criterion, build_mixup, build_optimizer, build_scheduler
from gmmvit.run.records import (STATUS_FAILED, STATUS_FINISHED, STATUS_RUNNING, RunRecord,
                                load_checkpoint, remove_temporaries, rng_state, save_checkpoint, set_rng_state)
from gmmvit.run.repair import continue_from, usable_record
from gmmvit.run.selection import BestWeights, selection_metric, validation_figures
from gmmvit.run.tracking import build_tracker
from gmmvit.run.train import DIVERGENCE_CHECK_EVERY, build_model, evaluate, seed_everything, train


@dataclass
class Member:
    cfg: object
    run_dir: Path
    record: RunRecord
    state: Optional[dict]  # the checkpoint it resumes from
    lock: runlock.RunLock
    failed: Optional[str] = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def epoch(self) -> int:
        return 0 if self.state is None else int(self.state["epoch"])


def _claim(cfg) -> Optional[Member]:
    """Member ``cfg`` with its lock held, or None where it cannot join a group whole."""
    run_dir = Path(cfg.run_dir)
    lock = None
    try:
        identity.same_run_or_refuse(cfg, run_dir)
        if identity.twin_of(cfg, run_dir) is not None or RunRecord(run_dir).status == STATUS_FINISHED:
            return None
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = runlock.acquire(run_dir, log=lambda *a, **k: None)
        record = RunRecord(run_dir)
        if record.status != STATUS_FINISHED:
            remove_temporaries(run_dir)
            record = usable_record(record)
            state = load_checkpoint(run_dir)
            if state is not None or not record.history:  # else train() refuses it in one line
                return Member(cfg, run_dir, record, state, lock)
    except (runlock.Held, ConfigError, CheckpointError, OSError):
        pass  # its own job says why, in one line, when it gets to it
    if lock is not None:
        lock.release()
    return None


def train_group(cfgs: list) -> dict:
    """Train ``cfgs[0]``'s run, fused with every other member of ``cfgs`` that can join it whole."""
    lead = _claim(cfgs[0])
    if lead is None:
        return train(cfgs[0])  # finished, trained elsewhere, or refused: train() says so
    claimed = [lead] + [m for m in map(_claim, cfgs[1:]) if m is not None]
    members = [m for m in claimed if m.epoch == lead.epoch]
    with contextlib.ExitStack() as locks:
        for m in claimed:
            locks.callback(m.lock.release)
        for m in claimed:
            if m.epoch != lead.epoch:
                m.lock.release()  # at another epoch: its own job trains it
        if len(members) == 1:
            print(f"[gmmvit] fused: {lead.name} trains alone: the other {len(cfgs) - 1} run(s) of its group cannot "
                  "join it (finished, trained by another job, at another epoch, or a folder its own job refuses)",
                  flush=True)
            lead.lock.release()
            return train(cfgs[0])
        print(f"[gmmvit] fused: {lead.name} trains {len(members)} runs as one model: "
              + ", ".join(m.name for m in members), flush=True)
        with recorded_end([(m.record, m.cfg.recipe.epochs) for m in members],
                          f"fused group of {members[0].name}") as trackers:
            _train_group(members, lead.epoch, trackers)
        return lead.record.data


def stacked_optimizer_state(states: list[dict], net: FusedModel) -> dict:
    """The members' own AdamW ``state_dict``s as one over their stacked tensors (their step counts
    and groups are alike: members of a group are at one epoch). A stacked tensor a member does not
    own (another member's mask) starts from zeros in its slice, as it stays."""
    owned: list[dict] = [{} for _ in net.params]
    for g, (s, index) in enumerate(zip(states, net.param_index)):
        for i, entry in s["state"].items():
            owned[index[int(i)]][g] = entry
    merged = {}
    for j, by_member in enumerate(owned):
        if not by_member:
            continue
        some = next(iter(by_member.values()))
        merged[j] = {k: (v if k == "step" else torch.stack([by_member[g][k] if g in by_member else torch.zeros_like(v)
                                                            for g in range(net.size)]))
                     for k, v in some.items()}
    groups = copy.deepcopy(states[0]["param_groups"])
    groups[0]["params"] = list(range(len(net.params)))
    return {"state": merged, "param_groups": groups}


def member_optimizer_state(stacked: dict, g: int, net: FusedModel) -> dict:
    """Member g's slice of the stacked AdamW ``state_dict``: what its unfused optimizer loads."""
    index = net.param_index[g]
    state = {i: {k: (v.clone() if k == "step" else v[g].clone()) for k, v in stacked["state"][j].items()}
             for i, j in enumerate(index) if j in stacked["state"]}
    groups = copy.deepcopy(stacked["param_groups"])
    groups[0]["params"] = list(range(len(index)))
    return {"state": state, "param_groups": groups}


def _member_data(m: Member, splits, device, workers: int):
    """Member m's training loader, sampler and test/validation loaders: the unfused run's
    (``gmmvit.run.loaders``), at its seed."""
    train_split, val_split, test_split = run_splits(m.cfg, splits)
    loader, sampler = training_loader(m.cfg, train_split, device, workers)
    val = eval_loader(val_split, m.cfg, device, workers) if val_split is not None else None
    return loader, sampler, eval_loader(test_split, m.cfg, device, workers), val


def _fail(m: Member, reason: str, active: torch.Tensor, g: int) -> None:
    m.failed = reason
    active[g] = False
    m.extra["progress"].close()
    m.record.update(status=STATUS_FAILED, reason=reason)
    m.extra["tracker"].end(STATUS_FAILED, reason)
    print(f"[gmmvit] {m.name} failed: {reason}; the rest of its fused group trains on", flush=True)


def _train_group(members: list[Member], start_epoch: int, trackers: dict) -> None:
    lead = members[0].cfg
    recipe, ds = lead.recipe, lead.dataset
    for m in members:
        identity.record_config(m.cfg, m.run_dir)
    runs_per_gpu = lead.get("runs_per_gpu", 1)
    device = devices.pick_device(lead.device, runs_per_gpu)
    if lead.threads:
        torch.set_num_threads(lead.threads)
    use_bf16 = lead.precision == "bf16" or (lead.precision == "auto" and device.type == "cuda")
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16,  # noqa: E731
                                      cache_enabled=False)

    net = FusedModel([build_member(m.cfg) for m in members])  # each at its seed: the unfused init
    evals = []
    for m in members:
        seed_everything(m.cfg.seed, m.cfg.deterministic)
        evals.append(build_model(m.cfg))  # the member alone: evaluation, best.pt, mask figures
    for m, model in zip(members, evals):  # each its own: members' masks differ in parameters and MACs
        m.extra.update(params=count_params(model), macs=count_macs(model, ds.img_size, ds.channels))

    splits = load_splits(ds)
    workers = devices.loader_workers(lead.workers, device, runs_per_gpu)
    data = [_member_data(m, splits, device, workers) for m in members]
    loaders = [d[0] for d in data]
    steps_per_epoch = min(len(loader) for loader in loaders)
    if steps_per_epoch == 0:
        raise ConfigError(no_full_batch(lead, len(run_splits(lead, splits)[0])))

    net.to(device)
    optimizer = build_optimizer(recipe, net)
    scheduler = build_scheduler(recipe, optimizer, steps_per_epoch)
    mixup = build_mixup(recipe, ds.num_classes)

    def forward(images: torch.Tensor, keeps: dict) -> torch.Tensor:
        return net(images, keeps)

    compiled = Compiled(forward, lead.get("compile", "auto"), device)  # lazy: compiles at step 1
    step_fn = FusedStep(net, optimizer, build_criterion(recipe, mixup), autocast, recipe.grad_clip,
                        forward=compiled.model if compiled.mode else None)
    randoms = [MemberRandom(m.cfg.seed) for m in members]

    on_device = isinstance(loaders[0], resident.GpuBatches)
    paths = {"step": f"fused x{len(members)}", "attention": "explicit", "data": "device" if on_device else "loader",
             "precision": "bf16" if use_bf16 else "fp32", "device": str(device)}
    wall_before = [0.0] * len(members)
    if start_epoch:
        for g, m in enumerate(members):
            net.load_member(g, m.state["model"])
            with randoms[g]:
                set_rng_state(m.state["rng"])
            wall_before[g] = m.state["wall_s"]
            continue_from(m.record, m.state)
        optimizer.load_state_dict(stacked_optimizer_state([m.state["optimizer"] for m in members], net))
        scheduler.load_state_dict(members[0].state["scheduler"])
        print(f"[gmmvit] resuming fused group of {members[0].name} after {epoch_label(start_epoch - 1, recipe.epochs)}",
              flush=True)

    for g, m in enumerate(members):
        evals[g].load_state_dict(net.member_state(g))
        evals[g].to(device)
        best = BestWeights(m.run_dir, m.record, selection_metric(m.cfg))
        best.start(m.state)
        meta = {"model": m.cfg.model.name, "mask": m.cfg.mask.name, "dataset": ds.name, "seed": m.cfg.seed,
                "sweep": m.cfg.sweep, "name": m.name}
        tracker = trackers[m.run_dir] = build_tracker(m.cfg, m.run_dir, (m.state or {}).get("wandb_id"), meta,
                                                      alongside=True)
        size = {"params": m.extra["params"], "macs": m.extra["macs"]}
        m.record.update(status=STATUS_RUNNING, reason=None, meta=meta, epochs=recipe.epochs,
                        wandb_id=tracker.run_id, **size)
        tracker.begin(m.record.history)
        tracker.log_summary(**size)
        record_environment(m.record, tracker, device)
        m.record.update(paths=paths)
        figures = MaskFigures(m.cfg, evals[g], m.run_dir, tracker)
        figures.start(start_epoch)
        m.extra.update(best=best, tracker=tracker, figures=figures, config=identity.as_recorded(m.cfg),
                       progress=Progress(m.name, recipe.epochs, steps_per_epoch, start_epoch))

    # each member's stochastic depth as its run alone draws it: its model's DropPath calls in order
    example = torch.zeros(2, ds.channels, ds.img_size, ds.img_size, device=device)
    sites = [drop_path_sites(model, example, autocast) for model in evals]

    # profile_steps=N: the group's step, as train() profiles a run's, into the first member's folder
    profiler = StepProfiler(lead.get("profile_steps"), members[0].run_dir, device)
    active = torch.ones(len(members), dtype=torch.bool, device=device)
    started = time.time()
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, recipe.epochs):
        net.train()
        for _, sampler, _, _ in data:
            sampler.set_epoch(epoch)
        t0, seen = time.time(), 0
        loss_sums = torch.zeros(len(members), device=device)
        for m in members:
            if not m.failed:
                m.extra["progress"].start_epoch(epoch)
        seed_group_stream([m.cfg.seed for m in members], epoch)  # resumed, it draws as it drew uninterrupted
        for images, targets, keeps in stacked_batches(loaders, randoms, mixup, sites, device):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            losses = step_fn(images, targets, keeps, active)
            loss_sums += losses * images.shape[1]
            if step % DIVERGENCE_CHECK_EVERY == 0:
                _drop_diverged(members, losses, active, f"in {epoch_label(epoch, recipe.epochs)} step {step}")
            step += 1
            scheduler.step_update(step)
            profiler.step()
            seen += images.shape[1]
            for g, m in enumerate(members):
                if not m.failed:
                    m.extra["progress"].step(seen, loss_sums[g])
        _drop_diverged(members, loss_sums, active, f"during {epoch_label(epoch, recipe.epochs)}")
        train_s = time.time() - t0
        for g, m in enumerate(members):
            if not m.failed:
                _end_epoch(m, g, net, optimizer, scheduler, randoms[g], epoch, seen, float(loss_sums[g]),
                           train_s, wall_before[g] + time.time() - started, evals[g], data[g], device, autocast)
        if epoch == start_epoch:  # what compiling gave, as train() records it after its first epoch
            taken = {**paths, **compiled.report()}
            for m in members:
                if not m.failed:
                    m.record.update(paths=taken)
                    m.extra["tracker"].log_summary(**{f"paths/{k}": v for k, v in taken.items()})
            print(f"[gmmvit] fused group of {members[0].name} ran on: "
                  + ", ".join(f"{k}={v}" for k, v in taken.items()), flush=True)
        if not active.any():
            return
    for g, m in enumerate(members):
        if m.failed:
            continue
        history = m.record.history
        best = max(history, key=lambda r: r["test_top1"])
        final = {"best_top1": best["test_top1"], "best_epoch": best["epoch"],
                 "final_top1": history[-1]["test_top1"], "params": m.extra["params"], "macs": m.extra["macs"],
                 "wall_s": wall_before[g] + time.time() - started, **validation_figures(history)}
        m.extra["figures"].end(recipe.epochs)
        m.record.update(status=STATUS_FINISHED, final=final)
        m.extra["tracker"].log_summary(**{f"final/{k}": v for k, v in final.items()})
        m.extra["tracker"].end(STATUS_FINISHED)
        print(finished_line(m.name, final, recipe.epochs), flush=True)


def _drop_diverged(members: list[Member], losses: torch.Tensor, active: torch.Tensor, where: str) -> None:
    bad = (~torch.isfinite(losses)) & active  # one host read for the whole group
    if bad.any():
        for g in bad.nonzero().flatten().tolist():
            _fail(members[g], f"loss became {losses[g].item()} {where}", active, g)


def _end_epoch(m: Member, g: int, net: FusedModel, optimizer, scheduler, random: MemberRandom, epoch: int,
               seen: int, loss_sum: float, train_s: float, wall_s: float, model, data,
               device, autocast) -> None:
    """Member m's epoch as ``train()`` ends one: evaluated alone, recorded, checkpointed, best.pt.
    Its epoch_s is the group's training and its own evaluation, not the members' evaluated before it."""
    _, _, test_loader, val_loader = data
    evaluated = time.time()
    model.load_state_dict(net.member_state(g))
    top1 = evaluate(model, test_loader, device, autocast)
    eval_s = time.time() - evaluated
    row = {"epoch": epoch, "train_loss": loss_sum / seen, "test_top1": top1,
           "lr": optimizer.param_groups[0]["lr"], "img_per_s": seen / train_s,
           "train_s": train_s, "eval_s": eval_s, "epoch_s": train_s + eval_s}
    if val_loader is not None:
        row["val_top1"] = evaluate(model, val_loader, device, autocast)
    with signals_held():  # as train() does: a stop waits for the row, checkpoint and best.pt alike
        m.record.add_epoch(row)
        m.extra["tracker"].log_epoch(row)
        m.extra["figures"].after_epoch(epoch + 1)
        with random:
            rng = rng_state()
        save_checkpoint(m.run_dir, {
            "epoch": epoch + 1, "model": net.member_state(g),
            "optimizer": member_optimizer_state(optimizer.state_dict(), g, net),
            "scheduler": scheduler.state_dict(), "rng": rng, "wall_s": wall_s,
            "wandb_id": m.extra["tracker"].run_id, "history": m.record.history, "config": m.extra["config"]})
        m.extra["best"].after_epoch(row, model)
        # inside the held block: a stop's line follows the line of the epoch it recorded
        print(f"{epoch_line(m.name, row, m.cfg.recipe.epochs)} (fused x{net.size})", flush=True)
