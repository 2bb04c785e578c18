"""Model FLOPs utilisation: the training FLOPs a rate stands for, over the card's dense bf16 peak.

Training FLOPs per image = 6 x the forward's multiply-adds (a multiply-add is 2 FLOPs, and the
backward costs twice the forward), with the MACs of ``gmmvit.nn.complexity`` (every Linear and
Conv2d, the paper table's convention: the attention matmuls and the mask are not counted, so the
figure is a lower bound). The peak is the vendor's dense (no sparsity) bf16 tensor-core figure.
"""

from __future__ import annotations

import functools
from typing import Optional

# dense bf16 tensor TFLOPS by the name torch.cuda.get_device_name gives; the first name contained wins
DENSE_BF16_TFLOPS = (("GH200", 989.0), ("H200 NVL", 835.0), ("H200", 989.0), ("H100 NVL", 835.0),
                     ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("B200", 2250.0))


def peak_tflops(card: str) -> Optional[float]:
    """The card's dense bf16 peak, or None for a card this table does not know."""
    return next((tflops for name, tflops in DENSE_BF16_TFLOPS if name in card), None)


@functools.lru_cache(maxsize=None)
def macs_per_image(model: str, dataset: str = "cifar10") -> int:
    """The forward MACs of one image of the paper's ``model`` on ``dataset`` (the mask adds none)."""
    from gmmvit.bench.machine import compose
    from gmmvit.nn.complexity import count_macs
    from gmmvit.run.train import build_model

    cfg = compose([f"model={model}", "mask=none", f"dataset={dataset}"])
    return count_macs(build_model(cfg), cfg.dataset.img_size, cfg.dataset.channels)


def mfu(img_s: float, macs: int, peak: float) -> float:
    """The share of ``peak`` TFLOPS that training ``img_s`` images a second of ``macs`` MACs uses."""
    return img_s * 6 * macs / (peak * 1e12)
