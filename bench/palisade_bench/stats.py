"""Order statistics and the noise check every figure goes through."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile ``q`` (0..1) of ``values``.

    Raises:
        ValueError: when ``values`` is empty.
    """
    if not values:
        raise ValueError("quantile of no values: expected at least one sample")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = math.ceil(pos)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def median(values: Sequence[float]) -> float:
    """Median of ``values``."""
    return quantile(values, 0.5)


def spread(values: Sequence[float]) -> float:
    """Interquartile range over the median: the relative noise of a sample set."""
    mid = median(values)
    if mid == 0:
        return 0.0
    return (quantile(values, 0.75) - quantile(values, 0.25)) / abs(mid)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, p99, quartiles, spread and count of ``values``."""
    return {
        "n": len(values),
        "median": median(values),
        "p99": quantile(values, 0.99),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "min": float(min(values)),
        "max": float(max(values)),
        "spread": spread(values),
    }


def ratio(value: float, baseline: float) -> float | None:
    """``value / baseline``, or None when the baseline is zero."""
    if baseline == 0:
        return None
    return value / baseline
