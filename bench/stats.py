"""Medians and ratios: the machines are noisy, so every verdict is a median of ratios within one run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no measurements")
    return float(statistics.median(values))


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of per-round ratios ``numerators[i] / denominators[i]``.

    Each round measures both sides back to back, so a burst of load from another process on the
    machine tends to hit both sides of one round: the per-round ratio cancels much of it.
    """
    if len(numerators) != len(denominators):
        raise ValueError("paired measurements must have the same length")
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


def rounded(values: Sequence[float], digits: int = 4) -> list[float]:
    return [round(v, digits) for v in values]
