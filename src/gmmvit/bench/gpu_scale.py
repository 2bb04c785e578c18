"""How much work each phase of the GPU check (``gmmvit.bench.gpu_check``) does: ``GPU``, its
sizes on a lent card, and ``REHEARSAL``, toy sizes that run every phase on the CPU so that a
mistake in the check costs minutes here rather than a lent card's window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Scale:
    device: str = "cuda"
    threads: Optional[int] = None  # OMP_NUM_THREADS of every process the check starts
    precision: str = "bf16"  # phase E's fused steps
    recipe: tuple = ("recipe.epochs=2", "recipe.passes_per_epoch=1", "recipe.warmup_epochs=0.2",
                     "limit_train=30000")  # phase A: 2 x 234 steps of batch 128
    e2e_images: int = 12_800  # phase B: a training epoch of train()
    e2e_test: int = 2_000
    batch: int = 128
    profile_steps: int = 10
    profile_wait: int = 60  # gmmvit.run.profiling.WAIT_STEPS: after compilation and graph capture
    pack_sizes: tuple = (1, 2, 4)  # phase C: processes at once
    pack_steps: int = 400  # 400 x 128 images: several seconds a process at ViT-GMM's graphed rate
    pack_warmup: int = 20
    pack_images: int = 12_800
    fused_batch: int = 128  # phase E
    fused_steps: int = 20
    fused_warmup: int = 3
    fused_members: int = 16  # the largest group phase E builds
    data_images: int = 12_800
    grads_batch: int = 64  # phase A's one-step check of compiled against eager (gmmvit.bench.compiled_grads)
    grads_backend: str = "inductor"


GPU = Scale()
REHEARSAL = Scale(device="cpu", threads=1, precision="fp32",
                  recipe=("recipe.epochs=2", "recipe.passes_per_epoch=1", "recipe.warmup_epochs=1",
                          "recipe.batch_size=32", "limit_train=128", "limit_test=64"),
                  e2e_images=64, e2e_test=32, batch=16, profile_steps=1, profile_wait=1, pack_sizes=(1, 2),
                  pack_steps=2, pack_warmup=1, pack_images=256, fused_batch=2, fused_steps=1,
                  fused_warmup=1, fused_members=4, data_images=128, grads_batch=4,
                  grads_backend="aot_eager")  # compiling's graph capture without inductor's minutes


def on_cpu(key: str, value: str) -> str:
    """A rehearsal's stand-in for a setting only CUDA has: the graphed step and torch.compile's
    modes become the paths the CPU takes (and compiling on a CPU would cost the rehearsal minutes)."""
    if key == "step_graph" and value == "true":
        return "auto"
    if key == "compile" and value not in ("false", "auto"):
        return "false"
    return value
