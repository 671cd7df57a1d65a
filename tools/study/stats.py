"""Mean and spread over seeds, and whether a paired difference stands out from the noise."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from scipy.stats import t as student_t


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation over seeds (nan for one seed)
    n: int


def summarize(values: Sequence[float]) -> Summary:
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return Summary(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class Difference:
    """``a - b`` over seeds that share data order and initialisation (a paired comparison)."""
    mean: float
    std: float
    half_width: float  # of the two-sided 95% Student-t interval of the mean difference

    @property
    def within_noise(self) -> bool:
        """True when the 95% interval contains zero (or cannot be computed)."""
        return not abs(self.mean) > self.half_width


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    if len(a) != len(b):
        raise ValueError(f'paired comparison needs one value per seed on both sides, got {len(a)} and {len(b)}')
    diffs = [x - y for x, y in zip(a, b)]
    summary = summarize(diffs)
    half_width = student_t.ppf(0.5 + confidence / 2, summary.n - 1) * summary.std / math.sqrt(summary.n) \
        if summary.n > 1 else math.nan
    return Difference(summary.mean, summary.std, half_width)
