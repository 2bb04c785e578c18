"""`make bench`: training speed on this machine, beside the authors' measured figures (gmmvit/paper).

One run measures and prints one markdown report (command and machine included):

* train-step img/s for every model x mask (models: those in ``conf/model/``), built through the
  project's own config (Hydra compose + ``gmmvit.train.build_model``): batch 128 of the dataset's
  input size, the recipe's AdamW and loss, median of ``--steps`` steps after warm-up, and the
  mask's overhead over the same model without it (a model's masks take turns step by step, so
  both see the same machine load); with ``--authors PATH`` the authors' models join the rotation;
* loader throughput per core (one process, one torch thread) of each dataset's training
  augmentation on synthetic images of the dataset's size: the per-image PIL pipeline
  (``data.build_transforms``, what the DataLoader runs) and the batched tensor pipeline
  (``gpu_data.BatchAugment``, what ``data_on_gpu`` runs on the GPU) on the CPU;
* on a GPU, one end-to-end training epoch (``train()`` itself on GPU-resident synthetic data).

    python -m gmmvit.bench                      # everything, CPU defaults: 2 threads, 10 steps
    python -m gmmvit.bench --models vit --masks none,gmm --steps 5 --out bench.md
    python -m gmmvit.bench --tiny               # CI-sized: batch 8, 1 step, 32 images
    python -m gmmvit.bench --authors /tmp/Gaussian-Mixture-Mask-Attention   # theirs vs ours, same machine
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gmmvit import fast, paper

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"

MODELS = ("vit", "swin", "cait", "pit", "t2t")
MASKS = ("none", "elm", "gmm")
DATASETS = ("cifar10", "cifar100", "svhn", "tinyimagenet", "fashion_mnist", "digits")
# the authors' measured figures (gmmvit/paper/README.md): their training step on 2 CPU threads, and
# one core augmenting 32x32 images
AUTHORS_STEP = paper.authors_step_speed()
AUTHORS_LOADER = paper.authors_loader_speed()
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "tinyimagenet": 100_000}
TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032, "tinyimagenet": 10_000}


# --- config --------------------------------------------------------------------------------------

def compose(overrides: Sequence[str] = ()):
    """The config ``python src/train.py logger=none <overrides>`` would run."""
    from gmmvit.cli import compose_config

    return compose_config(["logger=none", *overrides])


def available(names: Sequence[str], group: str) -> list[str]:
    return [n for n in names if (CONF / group / f"{n}.yaml").exists()]


def all_models() -> list[str]:
    extra = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem not in MODELS)
    return available(MODELS, "model") + extra


# --- machine ---------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device, threads: int) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    return (f"CPU {cpu_model()} ({os.cpu_count()} logical cores), torch threads {threads}; "
            f"GPU {gpu}; torch {torch.__version__}{cuda}; Python {platform.python_version()}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- train step ------------------------------------------------------------------------------------

def time_train_steps(model: str, masks: Sequence[str], batch: int = 128, steps: int = 10, warmup: int = 2,
                     device: str = "cpu", precision: str = "fp32", compile="false",
                     attention: str = "auto", dataset: str = "cifar10",
                     overrides: Sequence[str] = (), authors: Optional[str] = None) -> list[dict]:
    """Median img/s of full training steps (forward, loss, backward, AdamW) on random images, one
    result per mask.

    The masks' steps alternate (none, gmm, none, gmm, ...), so a mask's overhead compares steps
    taken under the same machine load. With ``authors`` (a checkout of the authors' repository)
    their model of the same name and mask joins the rotation.
    """
    from gmmvit.recipe import build_criterion, build_optimizer
    from gmmvit.train import build_model

    dev = torch.device(device)
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    fast.set_attention(attention)
    runs, info = {}, {}
    for mask in masks:
        cfg = compose([f"model={model}", f"mask={mask}", f"dataset={dataset}", *overrides])
        ds = cfg.dataset
        torch.manual_seed(0)
        nets = {"ours": build_model(cfg)}
        if authors:
            nets["authors"] = authors_model(authors, model, mask, ds.num_classes, ds.img_size)
        images = torch.randn(batch, ds.channels, ds.img_size, ds.img_size, device=dev)
        targets = torch.randint(0, ds.num_classes, (batch,), device=dev)
        criterion = build_criterion(cfg.recipe, None)
        for who, net in nets.items():
            net = net.to(dev).train()
            runs[(mask, who)] = _train_step(fast.compile_model(net, compile, dev), build_optimizer(cfg.recipe, net),
                                            criterion, images, targets, dev, bf16)
        info[mask] = sum(p.numel() for p in nets["ours"].parameters() if p.requires_grad)
    times: dict = {key: [] for key in runs}
    losses: dict = {}
    try:
        for i in range(warmup + steps):
            for key, step in runs.items():
                sync(dev)
                t0 = time.perf_counter()
                losses[key] = step()
                sync(dev)
                if i >= warmup:
                    times[key].append(time.perf_counter() - t0)
    finally:
        fast.set_attention("auto")
    results = []
    for mask in masks:
        step_s = statistics.median(times[(mask, "ours")])
        r = {"model": model, "mask": mask, "img_s": batch / step_s, "step_ms": 1000 * step_s,
             "params": info[mask], "loss": float(losses[(mask, "ours")].detach()), "batch": batch}
        if authors:
            r["authors_img_s"] = batch / statistics.median(times[(mask, "authors")])
        results.append(r)
    return results


def _train_step(step_net, optimizer, criterion, images, targets, dev, bf16):
    """One training step of ``step_net`` as a closure, for the rotation in ``time_train_steps``."""
    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(step_net(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def time_train_step(model: str, mask: str, **kwargs) -> dict:
    """``time_train_steps`` for one mask."""
    return time_train_steps(model, [mask], **kwargs)[0]


# --- the authors' code, side by side ---------------------------------------------------------------

# our model names -> the names the authors' create_model takes (the table's CaiT is their cait-tiny)
AUTHORS_MODEL_NAME = {"vit": "vit", "swin": "swin", "cait": "cait-tiny", "pit": "pit", "t2t": "t2t"}


def check_authors_checkout(repo: str) -> None:
    """One line naming the fix when ``--authors`` cannot work."""
    import importlib.util

    if not (Path(repo) / "models" / "create_model.py").is_file():
        raise SystemExit(f"gmmvit.bench: {repo} has no models/create_model.py: point --authors at a checkout of "
                         "https://github.com/CatworldLee/Gaussian-Mixture-Mask-Attention")
    if importlib.util.find_spec("einops") is None:
        raise SystemExit("gmmvit.bench: the authors' models need einops: pip install einops")


def authors_model(repo: str, model: str, mask: str, num_classes: int, img_size: int) -> torch.nn.Module:
    """The authors' model, built by their ``models.create_model`` as their main.py calls it (stochastic
    depth 0.1, 5 kernels). Needs a checkout of their repository and ``pip install einops``."""
    from types import SimpleNamespace

    if model not in AUTHORS_MODEL_NAME:
        raise ValueError(f"no authors' counterpart for model {model!r}")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from models.create_model import create_model  # the authors' package, from their checkout

    args = SimpleNamespace(model=AUTHORS_MODEL_NAME[model], sd=0.1, is_GMM=mask == "gmm", is_SLM=mask == "elm",
                           num_kernals=5)
    return create_model(img_size, num_classes, args)


# --- loader ----------------------------------------------------------------------------------------

def synthetic_images(ds, n: int, seed: int = 0) -> np.ndarray:
    """n random uint8 images of the dataset's native size and channels, [n, H, W(, C)]."""
    rng = np.random.RandomState(seed)
    shape = (n, ds.native_size, ds.native_size) + ((ds.channels,) if ds.channels > 1 else ())
    return rng.randint(0, 256, size=shape, dtype=np.uint8)


def loader_throughput(dataset: str, n: int = 2048, batch: int = 128, chunk: int = 16) -> dict:
    """img/s on one core: PIL per-image pipeline vs batched tensor pipeline (both AutoAugment modes),
    the latter on calls of ``IMAGES_PER_CALL["cpu"]`` images as the training loader makes them."""
    from gmmvit.data import build_transforms
    from gmmvit.gpu_data import IMAGES_PER_CALL, BatchAugment, to_model_size

    cfg = compose([f"dataset={dataset}"])
    ds, aug = cfg.dataset, cfg.recipe.aug
    arrays = synthetic_images(ds, n)
    mode = "RGB" if ds.channels == 3 else "L"
    pil = [Image.fromarray(a, mode=mode) for a in arrays]
    row = {"dataset": dataset, "image": f"{ds.channels}x{ds.native_size}x{ds.native_size}"}
    with torch_threads(1):
        transform = build_transforms(ds, aug, train=True)
        transform(pil[0])
        t0 = time.perf_counter()
        for img in pil:
            transform(img)
        row["pil"] = n / (time.perf_counter() - t0)
        tensor = torch.from_numpy(arrays)
        tensor = tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)
        tensor = to_model_size(tensor.contiguous(), ds)
        for key, aa in (("tensor_sample", "sample"), ("tensor_batch", "batch")):
            augment = BatchAugment(ds, aug, autoaugment=aa, chunk=chunk)
            augment(tensor[:batch])
            timings = []
            for _ in range(2):  # the first pass also pays for allocating the larger buffers
                t0 = time.perf_counter()
                for part in tensor.split(IMAGES_PER_CALL["cpu"]):
                    augment(part)
                timings.append(time.perf_counter() - t0)
            row[key] = n / min(timings)
    return row


# --- GPU epoch -------------------------------------------------------------------------------------

class SyntheticSplit(Dataset):
    """Random uint8 images held like torchvision's CIFAR (``.data`` NHWC, ``.targets``)."""

    def __init__(self, n: int, size: int, channels: int, classes: int, seed: int):
        rng = np.random.RandomState(seed)
        shape = (n, size, size) + ((channels,) if channels > 1 else ())
        self.data = rng.randint(0, 256, size=shape, dtype=np.uint8)
        self.targets = rng.randint(0, classes, size=n).tolist()
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i], mode=self.mode), self.targets[i]


def synthetic_split(train: bool, n_train: int = 50_000, n_test: int = 2_000, size: int = 32,
                    channels: int = 3, classes: int = 10, root: Optional[str] = None) -> SyntheticSplit:
    """A ``dataset.source`` for ``train()``: CIFAR-shaped random data, no download."""
    return SyntheticSplit(n_train if train else n_test, size, channels, classes, seed=0 if train else 1)


def gpu_epoch(model: str = "vit", mask: str = "gmm", n_train: int = 50_000, passes: float = 1,
              epochs: int = 2, compile=True, attention: str = "auto", data_on_gpu: str = "true",
              device: str = "cuda", batch: int = 128, n_test: int = 2_000,
              profile_steps: Optional[int] = None, step_graph: Optional[str] = None) -> dict:
    """``train()`` for ``epochs`` epochs of ``passes`` x ``n_train`` synthetic CIFAR-sized images;
    img/s of the last epoch (the first one pays for compilation), the fast paths the run took, and
    with ``profile_steps`` the text of its ``profile.md``."""
    from omegaconf import open_dict

    from gmmvit.train import train

    cfg = compose([f"model={model}", f"mask={mask}", "dataset=cifar10"])
    with tempfile.TemporaryDirectory(prefix="gmmvit-bench-") as tmp, open_dict(cfg):
        cfg.dataset.source = {"_target_": "gmmvit.bench.synthetic_split", "n_train": n_train,
                              "n_test": n_test, "size": cfg.dataset.img_size,
                              "channels": cfg.dataset.channels, "classes": cfg.dataset.num_classes}
        cfg.run_dir = str(Path(tmp) / "run")
        cfg.device, cfg.compile, cfg.attention, cfg.data_on_gpu = device, compile, attention, data_on_gpu
        cfg.recipe.epochs, cfg.recipe.passes_per_epoch, cfg.recipe.warmup_epochs = epochs, passes, 0
        cfg.recipe.batch_size = batch
        cfg.profile_steps = profile_steps
        if step_graph is not None:  # None: the config's default
            cfg.step_graph = step_graph
        t0 = time.perf_counter()
        record = train(cfg)
        wall = time.perf_counter() - t0
        profile = Path(cfg.run_dir, "profile.md")
        profile = profile.read_text() if profile.exists() else None
    history = record.get("history", [])
    if not history:
        raise RuntimeError(f"train() recorded no epoch (status {record.get('status')}: {record.get('reason')})")
    last = history[-1]
    return {"model": model, "mask": mask, "images": int(n_train * passes), "epochs": len(history),
            "img_s": last["img_per_s"], "epoch_s": last["epoch_s"], "first_epoch_s": history[0]["epoch_s"],
            "wall_s": wall, "compile": compile, "attention": attention, "data_on_gpu": data_on_gpu, "step_graph": step_graph,
            "train_loss": last["train_loss"], "paths": record.get("paths", {}), "profile": profile}


def gpu_data_rate(n_train: int = 25_000, device: str = "cuda", batch: int = 128) -> dict:
    """img/s of the training data alone on the device: uint8 CIFAR-sized images through the paper's
    batched augmentation and Mixup/CutMix, as ``train()`` draws them, with no model."""
    from gmmvit import data as data_lib
    from gmmvit import gpu_data
    from gmmvit.recipe import build_mixup

    cfg = compose(["dataset=cifar10"])
    dev = torch.device(device)
    sampler = data_lib.RepeatedPassSampler(n_train, 1, 0)
    split = synthetic_split(True, n_train=n_train, size=cfg.dataset.img_size)
    batches = gpu_data.GpuBatches.from_split(split, cfg.dataset, cfg.recipe, dev, sampler)
    mixup = build_mixup(cfg.recipe, cfg.dataset.num_classes)
    rates = []
    for _ in range(2):  # the first pass pays for the kernels' first launches
        sync(dev)
        t0, seen = time.perf_counter(), 0
        for images, targets in batches:
            images, targets = mixup(images, targets)
            seen += images.shape[0]
        sync(dev)
        rates.append(seen / (time.perf_counter() - t0))
    return {"img_s": rates[-1], "images": n_train}


# --- report ----------------------------------------------------------------------------------------

def fmt(x, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def step_rows(results: list[dict]) -> list[list]:
    """STEP_HEADER rows, plus SIDE_BY_SIDE_HEADER cells where the authors' code was timed alongside."""
    base = {r["model"]: r for r in results if r["mask"] == "none" and "img_s" in r}
    side_by_side = any("authors_img_s" in r for r in results)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["model"], r["mask"], "error", "-", "-", "-", "-", r["error"][:80]]
                        + ["-"] * (len(SIDE_BY_SIDE_HEADER) if side_by_side else 0))
            continue
        b = base.get(r["model"])
        overhead = (r["step_ms"] / b["step_ms"] - 1) * 100 if b and r["mask"] != "none" else None
        authors = AUTHORS_STEP.get(r["model"], {})
        a = authors.get(r["mask"])
        a_over = (authors["none"] / a - 1) * 100 if a and r["mask"] != "none" and "none" in authors else None
        row = [r["model"], r["mask"], fmt(r["img_s"], 1), fmt(r["step_ms"], 1),
               "-" if overhead is None else f"{overhead:+.1f}%", fmt(a),
               "-" if a_over is None else f"{a_over:+.1f}%", f"{r['params']:,}"]
        if side_by_side:
            theirs = r.get("authors_img_s")
            theirs_none = (b or {}).get("authors_img_s")
            their_over = (theirs_none / theirs - 1) * 100 if theirs and theirs_none and r["mask"] != "none" else None
            row += [fmt(theirs, 1), "-" if their_over is None else f"{their_over:+.1f}%",
                    "-" if not theirs else f"{r['img_s'] / theirs:.2f}x"]
        rows.append(row)
    return rows


STEP_HEADER = ["model", "mask", "img/s", "step ms", "mask overhead", "authors img/s (2-core CPU)",
               "authors overhead", "params"]
SIDE_BY_SIDE_HEADER = ["authors img/s, here, interleaved", "their mask overhead, here", "ours / theirs"]
LOADER_HEADER = ["dataset", "image", "PIL per-image img/s/core", "tensor batch, per-image AA img/s/core",
                 "tensor batch, v2 AA per chunk img/s/core", "authors img/s/core"]
EPOCH_HEADER = ["model", "mask", "images/epoch", "img/s (last epoch)", "epoch s", "first epoch s",
                "compile", "attention", "data on GPU"]


def render(command: str, machine_line: str, settings: str, steps: list[dict], loaders: list[dict],
           epochs: list[dict], notes: Sequence[str] = ()) -> str:
    out = ["## gmmvit bench", "", f"- command: `{command}`", f"- machine: {machine_line}",
           f"- settings: {settings}", ""]
    if steps:
        header = STEP_HEADER + (SIDE_BY_SIDE_HEADER if any("authors_img_s" in r for r in steps) else [])
        out += ["### Train step (img/s)", ""] + table(header, step_rows(steps)) + [""]
    if loaders:
        rows = []
        for r in loaders:
            if "error" in r:
                rows.append([r["dataset"], "-", "error", "-", "-", r["error"][:80]])
                continue
            authors = (f"{AUTHORS_LOADER['hand-written']:,} hand-written / {AUTHORS_LOADER['torchvision']:,} "
                       "torchvision" if r["dataset"].startswith("cifar") else "-")
            rows.append([r["dataset"], r["image"], fmt(r["pil"]), fmt(r["tensor_sample"]),
                         fmt(r["tensor_batch"]), authors])
        out += ["### Loader: training augmentation, one process, one thread", ""]
        out += table(LOADER_HEADER, rows) + [""]
        out += ["PIL per-image = `data.build_transforms` (the DataLoader path). Tensor batch = "
                "`gpu_data.BatchAugment` on calls of 1,024 uint8 images (as the training loader makes them), here on the CPU: per-image AA "
                "draws one AutoAugment sub-policy per image (faithful); v2 AA per chunk calls "
                "`torchvision.transforms.v2.AutoAugment`, which applies ONE sub-policy to each whole "
                "call (chunks of 16 images).", ""]
    if epochs:
        rows = []
        for r in epochs:
            if "error" in r:
                rows.append([r["model"], r["mask"], "-", "error", "-", "-", "-", "-", r["error"][:80]])
                continue
            rows.append([r["model"], r["mask"], f"{r['images']:,}", fmt(r["img_s"]), fmt(r["epoch_s"], 1),
                         fmt(r["first_epoch_s"], 1), r["compile"], r["attention"], r["data_on_gpu"]])
        out += ["### End-to-end training epoch on the GPU (train() on synthetic CIFAR-sized data)", ""]
        out += table(EPOCH_HEADER, rows) + [""]
    out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


def parse_markdown_table(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the first table in ``text`` whose first column is ``first_header``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] == first_header:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return cells, rows
    raise ValueError(f"no table starting with {first_header!r}")


# --- command line ----------------------------------------------------------------------------------

def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gmmvit.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=_csv, default=None, help="comma list (default: all in conf/model/)")
    p.add_argument("--masks", type=_csv, default=list(MASKS), help="comma list of none,elm,gmm")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model x mask (median)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; 3 with compile)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 2 on CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--precision", default="auto", help="auto (bf16 on GPU) | fp32 | bf16")
    p.add_argument("--compile", default="auto",
                   help="auto (on for GPU, off for CPU) | true | false | a torch.compile mode, e.g. reduce-overhead")
    p.add_argument("--attention", default="auto", help="auto | explicit | flex (see gmmvit.fast)")
    p.add_argument("--datasets", type=_csv, default=None, help="loader datasets (default: all)")
    p.add_argument("--loader-images", type=int, default=2048)
    p.add_argument("--no-steps", action="store_true", help="skip the train-step table")
    p.add_argument("--no-loader", action="store_true", help="skip the loader table")
    p.add_argument("--gpu-epoch", action=argparse.BooleanOptionalAction, default=None,
                   help="end-to-end epoch through train() (default: on when a GPU is present)")
    p.add_argument("--epoch-images", type=int, default=50_000)
    p.add_argument("--tiny", action="store_true", help="CI-sized: batch 8, 1 step, 32 loader images")
    p.add_argument("--authors", default=None, metavar="PATH",
                   help="a checkout of the authors' repository (needs einops): time their model of the same "
                        "name and mask too, steps alternating with ours")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.steps, args.loader_images, args.epoch_images = 8, 1, 32, 512
        args.warmup = 1 if args.warmup is None else args.warmup
    return args


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    try:
        compile_ = fast.compile_setting(args.compile, device) or "false"
    except ValueError as exc:
        raise SystemExit(f"gmmvit.bench: {exc}")
    warmup = args.warmup if args.warmup is not None else (3 if compile_ != "false" else 2)
    threads = args.threads or (2 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    models = args.models or all_models()
    missing = [m for m in models if not (CONF / "model" / f"{m}.yaml").exists()]
    if missing:
        raise SystemExit(f"gmmvit.bench: no conf/model/{missing[0]}.yaml (models here: {', '.join(all_models())})")
    if args.authors:
        check_authors_checkout(args.authors)
    precision = args.precision
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    command = "python -m gmmvit.bench " + " ".join(shlex.quote(a) for a in argv)
    rotation = " and the authors' models" if args.authors else ""
    settings = (f"device {device.type}, batch {args.batch} (dataset cifar10, 3x32x32), recipe AdamW + "
                f"label-smoothing CE, median of {args.steps} step(s) after {warmup} warm-up (a model's masks"
                f"{rotation} taking turns step by step), "
                f"precision {'bf16 autocast' if bf16 else 'fp32'}, compile {compile_}, "
                f"attention {args.attention}")

    steps: list[dict] = []
    if not args.no_steps:
        for model in models:
            try:
                rs = time_train_steps(model, args.masks, batch=args.batch, steps=args.steps, warmup=warmup,
                                      device=str(device), precision=precision, compile=compile_,
                                      attention=args.attention, authors=args.authors)
            except Exception as exc:  # one model failing must not lose the rest of the table
                rs = [{"model": model, "mask": mask, "error": f"{type(exc).__name__}: {exc}"} for mask in args.masks]
            steps += rs
            for r in rs:
                print(f"[bench] step {model}/{r['mask']}: "
                      f"{fmt(r.get('img_s'), 1) if 'img_s' in r else r['error']}", file=sys.stderr, flush=True)

    loaders: list[dict] = []
    if not args.no_loader:
        for dataset in args.datasets or available(DATASETS, "dataset"):
            try:
                loaders.append(loader_throughput(dataset, n=args.loader_images))
            except Exception as exc:
                loaders.append({"dataset": dataset, "error": f"{type(exc).__name__}: {exc}"})

    epochs: list[dict] = []
    run_epoch = args.gpu_epoch if args.gpu_epoch is not None else device.type == "cuda"
    if run_epoch:
        for mask in [m for m in ("none", "gmm") if m in args.masks] or ["gmm"]:
            try:
                epochs.append(gpu_epoch("vit", mask, n_train=args.epoch_images, compile=compile_,
                                        attention=args.attention, device=str(device), batch=args.batch,
                                        data_on_gpu="true" if device.type == "cuda" else "false"))
            except Exception as exc:
                epochs.append({"model": "vit", "mask": mask, "error": f"{type(exc).__name__}: {exc}"})

    notes = ["authors' figures: gmmvit/paper (their code, same machine as their report: 2 CPU threads, "
             "batch 128, median of 10 steps); compare only like with like."]
    if device.type == "cpu" and os.cpu_count() and os.cpu_count() <= 4:
        notes.append("timings on a small shared CPU are noisy: re-measure on a quiet machine before quoting.")
    report = render(command, machine(device, threads), settings, steps, loaders, epochs, notes)
    print(report, flush=True)
    if args.out:
        Path(args.out).write_text(report)
    return report


if __name__ == "__main__":
    main()
