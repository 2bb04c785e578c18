"""The table's statistics: paired differences and their 95% Student t-intervals."""

from __future__ import annotations

import math
import statistics
from typing import Optional

# two-sided 95% Student t quantiles t_{0.975, df}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
         26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

def t975(df: int) -> float:
    if df in T_975:
        return T_975[df]
    lower = [k for k in T_975 if k <= df]
    return T_975[max(lower)] if df < 1000 else 1.960


def paired_interval(diffs: list[float]) -> tuple[float, Optional[float], Optional[float]]:
    """Mean of paired differences and its 95% t-interval (None, None with fewer than two, or where
    every difference is the same: on a small test set accuracies come in steps of 100/n, so equal
    pairs are common, and their zero-width interval would claim a certainty the seeds do not give)."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    spread = statistics.stdev(diffs) if n > 1 else 0.0
    if spread == 0.0:
        return mean, None, None
    half = t975(n - 1) * spread / math.sqrt(n)
    return mean, mean - half, mean + half


def significant(low: Optional[float], high: Optional[float]) -> Optional[bool]:
    """False when the 95% interval contains zero, True when it excludes it, None without one."""
    if low is None or high is None:
        return None
    return not (low <= 0.0 <= high)
