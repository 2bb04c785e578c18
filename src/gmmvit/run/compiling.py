"""``cfg.compile``: ``torch.compile`` of the model the training step calls, and what it gave."""

from __future__ import annotations

from typing import Optional

import torch

from gmmvit.errors import ConfigError
from gmmvit.nn.kernels import FLEX_RECOMPILE_LIMIT

# torch.compile's own modes; reduce-overhead replays the step as CUDA graphs, which removes the
# per-kernel launch cost that dominates these small models on a GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_setting(setting, device: torch.device) -> Optional[str]:
    """``cfg.compile`` -> the torch.compile mode to use, or None for eager.

    ``auto``: ``default`` on CUDA, eager on CPU (compiling costs minutes on a small CPU);
    ``true``/``false``; or one of ``COMPILE_MODES``.
    """
    text = "auto" if setting is None else str(setting).lower()
    if text == "auto":
        return "default" if torch.device(device).type == "cuda" else None
    if text in ("true", "false"):
        return "default" if text == "true" else None
    if text not in COMPILE_MODES:
        raise ConfigError(f"compile must be auto, true, false or one of {COMPILE_MODES}, got {setting!r}")
    return text


def configure_dynamo(setting) -> None:
    """The one place this package changes torch's process-wide compiler settings:

    * ``recompile_limit`` at least ``FLEX_RECOMPILE_LIMIT``: FlexAttention compiles one kernel per
      attention shape (``gmmvit.nn.kernels``);
    * ``suppress_errors`` with ``compile=auto``: a graph that fails to compile runs eagerly with a
      warning instead of ending the run (compiling is an optimisation there, not the user's choice).
    """
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, FLEX_RECOMPILE_LIMIT)
    dynamo_config.suppress_errors = setting is None or str(setting).lower() == "auto"


class Compiled:
    """The model as the training step calls it, compiled per ``cfg.compile`` (``compile_setting``),
    and ``report()``: what compiling actually gave since."""

    def __init__(self, model: torch.nn.Module, setting, device: torch.device):
        self.setting, self.device = setting, device
        self.mode = compile_setting(setting, device)
        configure_dynamo(setting)
        self.frames_before = _frame_counts()
        if self.mode is None:
            self.model = model
            return
        # a sweep on Hydra's basic launcher trains run after run in one process: without a reset, the
        # runs' graphs pile up on the same code objects until dynamo's recompile limit sends later runs
        # to eager
        torch.compiler.reset()
        self.frames_before = _frame_counts()
        self.model = torch.compile(model, mode=None if self.mode == "default" else self.mode)

    def report(self) -> dict:
        """A silent fallback to eager (``auto`` suppresses compile errors) shows as ``eager (compile
        failed)`` or ``partly compiled``."""
        if self.mode is None:
            return {"compiled": "eager"}
        now = _frame_counts()
        delta = {k: now[k] - self.frames_before.get(k, 0) for k in now}
        failed = delta["total"] - delta["ok"]
        state = ("eager (compile failed)" if delta["graphs"] == 0 else "partly compiled" if failed else "compiled")
        return {"compiled": state, "compile_mode": self.mode, "graphs": delta["graphs"],
                "graph_breaks": delta["breaks"], "failed_frames": failed}


def _frame_counts() -> dict:
    from torch._dynamo.utils import counters

    return {"total": counters["frames"]["total"], "ok": counters["frames"]["ok"],
            "graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values())}


COMPILE_CHOICES = ("auto", "true", "false", *COMPILE_MODES)
