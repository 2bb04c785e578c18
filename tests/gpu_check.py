"""GPU check (NOT a pytest file): run by hand on a CUDA machine, about 5-6 minutes in all.

    PYTHONUNBUFFERED=1 python tests/gpu_check.py [--budget 330] [--out gpu_check.md] [--sections epoch,packing,...]

Sections run in the order given (default: epoch, packing, steps, flex, estimates: the figures the
speed targets need first); each stops starting items when the budget is spent.

1. FlexAttention (score * M[h, q, kv]) vs the explicit path on CUDA: forward and gradients w.r.t.
   q, k, v, sigma, alpha, fp32 and bf16, at each architecture's attention shapes;
2. train-step img/s for every model x {none, gmm}, bf16 autocast, batch 128: eager (all), then
   torch.compile (default mode, and reduce-overhead = CUDA graphs) + attention auto (= flex for the
   mul mask) as time allows, ViT-GMM also with the explicit path under compile and at batch 512;
3. one end-to-end epoch of ViT-GMM through train() on GPU-resident synthetic CIFAR-sized uint8
   data with the GPU augmentation (bf16; compile auto, then reduce-overhead), and the DataLoader
   path for comparison if time remains;
3b. packing: 2, then 4 such runs in separate processes on the one GPU, their img/s summed;
4. estimates: the 300-pass CIFAR-10 ViT-GMM wall time and the GPU-hours of the 40-run table.

Every section is wrapped so one failure loses nothing else; each item is bounded by SIGALRM and
the whole by --budget seconds; the markdown is printed as it grows and at the end in one block.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from gmmvit import bench, fast  # noqa: E402
from gmmvit.masks import GaussianMixtureMask  # noqa: E402

T0 = time.time()
LINES: list[str] = []


def emit(*lines: str) -> None:
    for line in lines:
        LINES.append(line)
        print(line, flush=True)


class ItemTimeout(Exception):
    pass


@contextmanager
def time_cap(seconds: float):
    seconds = max(int(seconds), 1)

    def handler(signum, frame):
        raise ItemTimeout(f"over its {seconds}s cap")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def left(budget: float) -> float:
    return budget - (time.time() - T0)


def err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


# --- 1. flex == explicit on CUDA ------------------------------------------------------------------

SHAPES = [  # name, batch lead dims, heads, grid, prefix, head dim, bias
    ("vit", (16,), 12, 8, 0, 16, False),
    ("pit stage 1", (8,), 2, 16, 1, 48, False),
    ("pit stage 3", (8,), 8, 4, 1, 48, False),
    ("t2t token", (8,), 1, 16, 0, 64, False),
    ("t2t blocks", (8,), 4, 8, 0, 64, False),
    ("swin window (5-d, bias)", (4, 16), 3, 4, 0, 32, True),
]


def check_flex(dtype: torch.dtype) -> list[list]:
    rows = []
    dev = torch.device("cuda")
    for name, lead, heads, grid, prefix, d, with_bias in SHAPES:
        try:
            torch.manual_seed(0)
            n = grid * grid + prefix
            mask = GaussianMixtureMask(heads, grid, prefix).to(dev)
            q, k, v = (torch.randn(*lead, heads, n, d, device=dev, dtype=dtype, requires_grad=True)
                       for _ in range(3))
            bias = torch.randn(lead[-1], heads, n, n, device=dev) if with_bias else None
            g = torch.randn(*lead, heads, n, d, device=dev, dtype=dtype)
            inputs = [q, k, v, mask.sigma, mask.alpha]
            # the reference in float32 from the same (possibly bf16) inputs
            ref = fast.explicit_masked_attention(q.float(), k.float(), v.float(), mask.full(), d ** -0.5,
                                                 bias)
            g_ref = torch.autograd.grad(ref, inputs, g.float())
            t = time.time()
            out = fast.flex_masked_attention(q, k, v, mask.full(), d ** -0.5, bias)
            g_out = torch.autograd.grad(out, inputs, g)
            took = time.time() - t
            errs = [(out.float() - ref).abs().max().item()]
            errs += [((a.float() - b).abs().max() / (b.abs().max() + 1e-12)).item() for a, b in zip(g_out, g_ref)]
            tol = 2e-3 if dtype == torch.float32 else 5e-2
            ok = errs[0] < tol * 5 and max(errs[1:]) < tol * 10
            rows.append([name, str(dtype).replace("torch.", ""), f"{errs[0]:.1e}",
                         " / ".join(f"{e:.1e}" for e in errs[1:]),
                         ("ok" if ok else "MISMATCH") + (f" (tiles {fast.flex_kernel_options(q)})"
                                                         if fast.flex_kernel_options(q) else ""),
                         f"{took:.1f}"])
        except Exception as exc:
            rows.append([name, str(dtype).replace("torch.", ""), "-", "-", "error " + err(exc), "-"])
            if "num_stages" not in fast.FLEX_SMALL_TILES and "triton" in str(exc).lower():
                fast.FLEX_SMALL_TILES = {**fast.FLEX_SMALL_TILES, "num_stages": 1}
                torch._dynamo.reset()
                rows.append([name, "-", "-", "-", "retrying with num_stages=1 for the rest", "-"])
    return rows


def section_flex(budget: float) -> None:
    emit("### 1. FlexAttention vs explicit on CUDA (max |out diff|; grad rel. diff q/k/v/sigma/alpha)", "")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        if left(budget) < 30:
            rows.append(["(rest)", str(dtype), "-", "-", "skipped: time", "-"])
            continue
        try:
            with time_cap(min(120, left(budget) - 20)):
                rows += check_flex(dtype)
        except ItemTimeout as exc:
            rows.append(["(rest)", str(dtype), "-", "-", "timeout " + str(exc), "-"])
    emit(*bench.table(["shape", "dtype", "out diff", "grad rel. diff", "result", "s (incl. compile)"], rows), "")
    # the model-level switch: ViT-GMM forward, attention explicit vs flex, fp32
    try:
        with time_cap(60):
            from gmmvit.train import build_model
            cfg = bench.compose(["model=vit", "mask=gmm"])
            torch.manual_seed(0)
            model = build_model(cfg).cuda().eval()
            x = torch.randn(32, 3, 32, 32, device="cuda")
            with torch.no_grad():
                fast.set_attention("explicit")
                a = model(x)
                fast.set_attention("flex")
                b = model(x)
            fast.set_attention("auto")
            emit(f"- ViT-GMM model forward, attention=flex vs explicit (fp32): max |logit diff| "
                 f"{(a - b).abs().max().item():.2e}", "")
    except Exception as exc:
        fast.set_attention("auto")
        emit(f"- ViT-GMM model forward check: error {err(exc)}", "")


# --- 2. train-step img/s ----------------------------------------------------------------------------

STEP_RESULTS: dict = {}


def section_steps(budget: float, eager_budget: float) -> None:
    emit("### 2. Train step img/s on this GPU (bf16 autocast, AdamW, median of 10 steps)", "")
    models = bench.all_models()
    rows = []
    eager_end = time.time() + eager_budget
    for model in models:
        for mask in ("none", "gmm"):
            if time.time() > eager_end or left(budget) < 20:
                rows.append([model, mask, "eager", "auto", 128, "skipped: time"])
                continue
            try:
                with time_cap(min(60, left(budget) - 10)):
                    r = bench.time_train_step(model, mask, batch=128, steps=10, warmup=3, device="cuda",
                                              precision="bf16", compile=False, attention="auto")
                STEP_RESULTS[(model, mask, "eager")] = r
                rows.append([model, mask, "eager", "auto", 128, bench.fmt(r["img_s"])])
            except Exception as exc:
                rows.append([model, mask, "eager", "auto", 128, "error " + err(exc)])
            finally:
                torch._dynamo.reset()
    plan = [("vit", "gmm", "auto", 128, "default"), ("vit", "none", "auto", 128, "default"),
            ("vit", "gmm", "auto", 128, "reduce-overhead"), ("vit", "none", "auto", 128, "reduce-overhead")]
    plan += [(m, k, "auto", 128, "default") for m in models if m != "vit" for k in ("gmm", "none")]
    plan += [(m, "gmm", "auto", 128, "reduce-overhead") for m in models if m != "vit"]
    plan += [("vit", "gmm", "explicit", 128, "default"), ("vit", "gmm", "auto", 512, "default")]
    for model, mask, attention, batch, mode in plan:
        if left(budget) < 45:
            rows.append([model, mask, mode, attention, batch, "skipped: time"])
            continue
        try:
            with time_cap(min(120, left(budget) - 15)):
                t = time.time()
                r = bench.time_train_step(model, mask, batch=batch, steps=10, warmup=3, device="cuda",
                                          precision="bf16", compile=mode, attention=attention)
            if attention == "auto" and batch == 128:
                key = (model, mask, "compile")
                if key not in STEP_RESULTS or r["img_s"] > STEP_RESULTS[key]["img_s"]:
                    STEP_RESULTS[key] = r
            rows.append([model, mask, mode, attention, batch,
                         f"{bench.fmt(r['img_s'])} (with compile {time.time() - t:.0f}s)"])
        except Exception as exc:
            rows.append([model, mask, mode, attention, batch, "error " + err(exc)])
        finally:
            torch._dynamo.reset()
    emit(*bench.table(["model", "mask", "mode", "attention", "batch", "img/s"], rows), "")


# --- 3. end-to-end epoch -----------------------------------------------------------------------------

EPOCH_RESULTS: dict = {}


def section_epoch(budget: float) -> None:
    emit("### 3. End-to-end training epoch, ViT-GMM, train() on synthetic CIFAR-sized data", "")
    rows = []
    for data_on_gpu, mode, n_train, epochs in (("true", "auto", 50_000, 2), ("true", "reduce-overhead", 50_000, 2),
                                               ("false", "auto", 20_000, 2)):
        if left(budget) < 50:
            rows.append(["vit", "gmm", data_on_gpu, mode, "-", "-", "-", "skipped: time"])
            continue
        try:
            with time_cap(min(150, left(budget) - 10)):
                r = bench.gpu_epoch("vit", "gmm", n_train=n_train, passes=1, epochs=epochs, compile=mode,
                                    attention="auto", data_on_gpu=data_on_gpu, device="cuda")
            if data_on_gpu not in EPOCH_RESULTS or r["img_s"] > EPOCH_RESULTS[data_on_gpu]["img_s"]:
                EPOCH_RESULTS[data_on_gpu] = {**r, "mode": mode}
            rows.append(["vit", "gmm", data_on_gpu, mode, f"{r['images']:,}", bench.fmt(r["img_s"]),
                         f"{r['epoch_s']:.1f} (first {r['first_epoch_s']:.1f})", "ok"])
        except Exception as exc:
            rows.append(["vit", "gmm", data_on_gpu, mode, "-", "-", "-", "error " + err(exc)])
        finally:
            torch._dynamo.reset()
    emit(*bench.table(["model", "mask", "data on GPU", "compile", "images/epoch", "img/s (last epoch)",
                       "epoch s", "result"], rows), "")


# --- 3b. several runs packed on the GPU ------------------------------------------------------------

PACK_SCRIPT = """
import sys
sys.path.insert(0, "src")
from gmmvit import bench
r = bench.gpu_epoch("vit", "gmm", n_train=50_000, passes=1, epochs=2, compile=sys.argv[1], data_on_gpu="true",
                    device="cuda")
print("IMG_S", r["img_s"], flush=True)
"""


def section_packing(budget: float) -> None:
    """runs_per_gpu: k processes train side by side on the one GPU; their img/s summed vs one alone."""
    import subprocess

    emit("### 3b. Several runs per GPU (runs_per_gpu): ViT-GMM epochs in k processes at once", "")
    single = EPOCH_RESULTS.get("true")
    mode = (single or {}).get("mode", "auto")
    rows = [["1", mode, bench.fmt(single["img_s"]) if single else "-", "-"]]
    procs: list = []
    for k in (2, 4):
        if left(budget) < 100:
            rows.append([str(k), mode, "-", "skipped: time"])
            continue
        try:
            procs = [subprocess.Popen([sys.executable, "-c", PACK_SCRIPT, mode], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True,
                                      cwd=Path(__file__).resolve().parents[1]) for _ in range(k)]
            rates = []
            for proc in procs:
                out, _ = proc.communicate(timeout=max(left(budget) - 10, 30))
                rates += [float(line.split()[1]) for line in out.splitlines() if line.startswith("IMG_S")]
            rows.append([str(k), mode, f"{bench.fmt(sum(rates))} (each {', '.join(bench.fmt(r) for r in rates)})",
                         "ok" if len(rates) == k else f"{len(rates)}/{k} finished"])
        except Exception as exc:
            for proc in procs:
                proc.kill()
            rows.append([str(k), mode, "-", "error " + err(exc)])
    emit(*bench.table(["runs on the GPU", "compile", "img/s, all runs together", "result"], rows), "")


# --- 4. estimates --------------------------------------------------------------------------------------

def section_estimates() -> None:
    emit("### 4. Estimates (from the numbers above)", "")
    e2e = EPOCH_RESULTS.get("true") or EPOCH_RESULTS.get("false")
    if not e2e:
        emit("- no end-to-end epoch measured: no estimate", "")
        return
    e2e_ips = e2e["img_s"]
    # evaluation: 100 passes over the test set, forward only (~3x a training step's throughput)
    vit_hours = (300 * 50_000 / e2e_ips + 100 * 10_000 / (3 * e2e_ips)) / 3600
    emit(f"- CIFAR-10 ViT-GMM, 300 passes (100 'epochs' x 3) at {e2e_ips:,.0f} img/s end to end: "
         f"**{vit_hours:.2f} h** ({vit_hours * 60:.0f} min) on this GPU")
    ref = STEP_RESULTS.get(("vit", "gmm", "compile")) or STEP_RESULTS.get(("vit", "gmm", "eager"))
    if not ref:
        emit("", "- no ViT-GMM step figure: no table estimate", "")
        return
    ratio = e2e_ips / ref["img_s"]   # what the loop, augmentation, mixup add to a bare step
    total, missing, lines = 0.0, [], []
    macs_ratio = {}
    from gmmvit.complexity import count_macs
    from gmmvit.train import build_model
    for model in bench.MODELS:
        for mask in ("none", "gmm"):
            r = STEP_RESULTS.get((model, mask, "compile")) or STEP_RESULTS.get((model, mask, "eager"))
            if r is None:
                missing.append(f"{model}/{mask}")
                continue
            if model not in macs_ratio:
                try:
                    m32 = count_macs(build_model(bench.compose([f"model={model}"])), 32, 3)
                    m64 = count_macs(build_model(bench.compose([f"model={model}", "dataset=tinyimagenet"])), 64, 3)
                    macs_ratio[model] = m64 / m32
                except Exception:
                    macs_ratio[model] = 4.0
            hours = 0.0
            for ds, n in bench.TRAIN_IMAGES.items():
                ips = r["img_s"] * ratio / (macs_ratio[model] if ds == "tinyimagenet" else 1.0)
                hours += (300 * n + 100 * bench.TEST_IMAGES[ds] / 3) / ips / 3600
            total += hours
            lines.append([model, mask, bench.fmt(r["img_s"]), f"{hours:.2f}"])
    emit(f"- end-to-end / bare-step ratio for ViT-GMM: {ratio:.2f} (applied to every model); Tiny-ImageNet "
         "(64 px) scaled by each model's Linear/Conv MACs ratio 64px/32px", "")
    emit(*bench.table(["model", "mask", "step img/s used", "GPU-hours, 4 datasets"], lines), "")
    emit(f"- **40-run table: about {total:.1f} GPU-hours** on this GPU"
         + (f" (missing, not counted: {', '.join(missing)})" if missing else ""), "")


# --- main ------------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=330, help="total seconds (sections stop starting items)")
    p.add_argument("--out", default=None)
    p.add_argument("--sections", default="epoch,packing,steps,flex,estimates",
                   help="which sections, in this order (the budget runs out for the last ones first)")
    args = p.parse_args()
    budget = args.budget
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device", file=sys.stderr)
        sys.exit(2)
    # flex is compiled per attention shape (several models, dtypes, batch sizes in one process)
    torch._dynamo.config.cache_size_limit = 64
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 64
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references exact (TF32 alone differs ~1e-2)
    emit("## gmmvit GPU check", "", f"- machine: {bench.machine(torch.device('cuda'), torch.get_num_threads())}",
         f"- flex available: {fast.flex_available()}; FLEX_MIN_TOKENS = {fast.FLEX_MIN_TOKENS}", "")
    sections = {
        "epoch": lambda: section_epoch(budget - 5),
        "packing": lambda: section_packing(budget - 5),
        "steps": lambda: section_steps(budget - 10, eager_budget=45),
        "flex": lambda: section_flex(min(70, budget)),
        "estimates": section_estimates,
    }
    for name in args.sections.split(","):
        fn = sections[name]
        try:
            fn()
        except Exception as exc:  # a section's failure must not lose the others
            emit(f"- section {name} failed: {err(exc)}", "```", traceback.format_exc()[-1500:], "```", "")
    emit(f"- total {time.time() - T0:.0f}s")
    text = "\n".join(LINES) + "\n"
    print("\n===== markdown =====\n" + text, flush=True)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
