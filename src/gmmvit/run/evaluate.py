"""One trained run evaluated again: its weights (``best.pt`` or the last checkpoint) on a test split,
through the same test pipeline the run evaluated with every epoch (``eval_loader``), so that its own
test set gives back the recorded number exactly.

Reports top-1, top-5, per-class accuracy and the confusion matrix (rows: true class, columns:
predicted), written as ``eval/<name>.json`` and ``eval/<name>.png`` in the run folder, and logged to the
run's W&B run when it has one (``tracking.reopened``: under the config its training logged, and not
while a trainer holds the run folder). The command is ``make eval`` (``gmmvit.config.evaluation``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from gmmvit.data.datasets import load_splits
from gmmvit.errors import CheckpointError
from gmmvit.run import devices
from gmmvit.run.identity import CONFIG, read_config
from gmmvit.run.loaders import eval_loader, run_splits
from gmmvit.run.progress import epoch_label
from gmmvit.run.records import METRICS, newest_checkpoint, read_json, write_json
from gmmvit.run.selection import BEST, best_from_checkpoints, load_weights
from gmmvit.run.tracking import reopened
from gmmvit.run.train import build_model

CHECKPOINTS = ("best", "last")


def uses_bf16(cfg: DictConfig, device: torch.device) -> bool:
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def weights_of(run_dir: Path, checkpoint: str) -> tuple[dict, int, str]:
    """(state_dict, epoch index, the file's name) of ``best.pt`` (without it, of the kept checkpoint
    holding the best epoch) or of the last readable checkpoint (``checkpoint.prev.pt`` where
    ``checkpoint.pt`` is unreadable): the name is what the result records as ``weights``."""
    if checkpoint == "best":
        if not (Path(run_dir) / BEST).exists():
            return best_from_checkpoints(run_dir)
        held = load_weights(Path(run_dir) / BEST)
        return held["model"], held["epoch"], BEST
    found = newest_checkpoint(run_dir)
    if found is None:
        raise CheckpointError(f"{run_dir} has no checkpoint.pt yet; train the run first")
    state, path = found
    return state["model"], state["epoch"] - 1, path.name


@torch.no_grad()
def predictions(model, loader, device, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of every test image, on the CPU."""
    model.eval()
    logits, targets = [], []
    for images, labels in loader:
        with autocast():
            out = model(images.to(device, non_blocking=True))
        logits.append(out.float().cpu())
        targets.append(labels.cpu())
    return torch.cat(logits), torch.cat(targets)


def scores(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """Top-1 (computed as the training loop computes it), top-5, per-class accuracy, confusion."""
    predicted = logits.argmax(1)
    total = targets.numel()
    top5 = logits.topk(min(5, num_classes), dim=1).indices.eq(targets[:, None]).any(1)
    confusion = torch.bincount(targets * num_classes + predicted, minlength=num_classes ** 2)
    confusion = confusion.reshape(num_classes, num_classes)
    per_class = [100.0 * confusion[c, c].item() / n if (n := confusion[c].sum().item()) else None
                 for c in range(num_classes)]
    return {"n": total, "top1": 100.0 * (predicted == targets).sum().item() / max(total, 1),
            "top5": 100.0 * top5.sum().item() / max(total, 1), "per_class": per_class,
            "confusion": confusion.tolist()}


def evaluate_run(cfg: DictConfig, run_dir: Path, checkpoint: str, name: str) -> dict:
    """Evaluate the run in ``run_dir`` as ``cfg`` (its recorded config with the eval's overrides)
    describes. Returns what ``eval/<name>.json`` holds."""
    run_dir = Path(run_dir)
    weights, epoch, source = weights_of(run_dir, checkpoint)
    device = devices.pick_device(cfg.device, cfg.get("runs_per_gpu", 1))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = uses_bf16(cfg, device)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16,  # noqa: E731
                                      cache_enabled=False)
    model = build_model(cfg)
    model.load_state_dict(weights)
    model.to(device)
    _, _, test_split = run_splits(cfg, load_splits(cfg.dataset))
    loader = eval_loader(test_split, cfg, device, devices.loader_workers(cfg.workers, device, 1))
    logits, targets = predictions(model, loader, device, autocast)
    metrics = read_json(run_dir / METRICS) or {}
    epochs = metrics.get("epochs") or cfg.recipe.epochs
    recorded = next((r for r in metrics.get("history", []) if r["epoch"] == epoch), {})
    result = {"run": str(run_dir), "checkpoint": checkpoint, "weights": source, "epoch": epoch,
              "epochs": epochs, "dataset": cfg.dataset.name, "precision": "bf16" if bf16 else "fp32", "device": str(device),
              "attention": str(cfg.attention),
              **scores(logits, targets, cfg.dataset.num_classes),
              "recorded_test_top1": recorded.get("test_top1") if own_test_set(cfg, run_dir, metrics) else None}
    out = run_dir / "eval"
    write_json(out / f"{name}.json", result)
    confusion_png(result, out / f"{name}.png", f"{run_dir.name}\n{name}")
    _log_to_wandb(cfg, run_dir, name, result, out / f"{name}.png")
    return result


def own_test_set(cfg: DictConfig, run_dir: Path, metrics: dict) -> bool:
    """Whether ``cfg`` evaluates the test images its run evaluated every epoch (its dataset, and as
    many of them: ``limit_test=32`` on a run of 64 is another set, and so is ``seed=1``, which draws
    the limited subset), so its recorded top-1 compares."""
    trained, _ = read_config(Path(run_dir) / CONFIG)
    if trained is None or cfg.dataset.name != metrics.get("meta", {}).get("dataset"):
        return False
    limited = cfg.get("limit_test") is not None
    return cfg.get("limit_test") == trained.get("limit_test") and (not limited or cfg.seed == trained.get("seed"))


def confusion_png(result: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = torch.tensor(result["confusion"], dtype=torch.float64)
    rows = confusion / confusion.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\ntop-1 {result['top1']:.2f}, top-5 {result['top5']:.2f} (n={result['n']})", fontsize=8)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _log_to_wandb(cfg, run_dir: Path, name: str, result: dict, png: Path) -> None:
    with reopened(cfg, run_dir, png.with_suffix(".json")) as tracker:
        tracker.log_summary(**{f"eval/{name}/{k}": result[k] for k in ("top1", "top5")},
                            **{f"eval/{name}/epoch": result["epoch"] + 1})  # epochs completed, as W&B's epoch axis
        tracker.log_images({f"eval/{name}/confusion": str(png)})


def report(result: dict) -> str:
    """The printed form: the figures, per-class accuracy, the confusion matrix."""
    lines = [f"{result['run']} ({result['checkpoint']}: {result['weights']}, "
             f"{epoch_label(result['epoch'], result.get('epochs'))}) on "
             f"{result['dataset']} test (n={result['n']}, {result['precision']}, {result['device']}): "
             f"top-1 {result['top1']:.2f}, top-5 {result['top5']:.2f}"]
    if result["recorded_test_top1"] is not None:
        lines[0] += f" (recorded at that epoch: {result['recorded_test_top1']:.2f})"
    lines.append("per class: " + ", ".join(f"{c}: {'–' if a is None else f'{a:.1f}'}"
                                           for c, a in enumerate(result["per_class"])))
    lines.append("confusion (rows true, columns predicted):")
    width = max(len(str(v)) for row in result["confusion"] for v in row)
    lines += ["  " + " ".join(str(v).rjust(width) for v in row) for row in result["confusion"]]
    return "\n".join(lines)
