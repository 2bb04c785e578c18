"""Parameter and MAC counts, in the convention of the paper's table.

MACs are the multiply-adds of every ``nn.Linear`` and ``nn.Conv2d`` in one
forward pass of one image (what ``thop`` counts for these models); the
attention matmuls and the mask are excluded, as in ``reference_params.csv``.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _linear_macs(module: nn.Linear, _inputs, output) -> int:
    return output.numel() * module.in_features


def _conv_macs(module: nn.Conv2d, _inputs, output) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


@torch.no_grad()
def count_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """Linear/Conv multiply-adds for one image, counted with forward hooks."""
    total = 0

    def hook(fn):
        def run(module, inputs, output):
            nonlocal total
            total += fn(module, inputs, output)
        return run

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(hook(_linear_macs)))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(hook(_conv_macs)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
