"""Profiles: turning validated records into mergeable counters and learning state.

A profile belongs to one (function, code version). Per signature it counts
events, invocations seen in, first/last seen and the packages that caused it.
Per invocation it keeps four rates (``connections``, ``processes``, ``files``,
``aws``) as histograms with exact buckets below 32 and power-of-two buckets above;
a histogram is a mergeable counter (buckets add), and its median and MAD are the
robust running estimate of what one invocation normally does.

Learning: a version is ``learning`` until it has ``learn_min_invocations``
invocations and no new signature for ``learn_quiet_seconds`` (in data time: the
timestamps of the records, so a replayed or delayed stream learns the same way),
then ``stable`` (``stable_at`` is written once). A version first seen while the
function has another version starts ``relearning`` with that version as prior:
behaviour the prior learned counts as known and ``relearn_min_invocations``
suffice. Behaviour unseen for ``decay_seconds`` before the version's last seen
counts as unknown again and drops out of policy suggestions.

Limitations: the state transition is decided by the instance applying the batch
that crosses the thresholds; with many instances it may be taken one batch late.
Data time follows the sender's clock, so a wrong clock shifts learning and decay.
Above 32 per invocation the histogram buckets are powers of two, so the median
and MAD there are approximate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import SigStats, VersionInfo
from .settings import Settings

METRICS = ("connections", "processes", "files", "aws")


def bucket_of(value: int) -> int:
    """The histogram bucket of a per-invocation count (its lower bound)."""
    if value < 32:
        return max(value, 0)
    return 1 << (value.bit_length() - 1)


def rates_of(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The per-invocation rates of one record's events."""
    out = dict.fromkeys(METRICS, 0)
    for event in events:
        kind = event["kind"]
        if kind == "network" and event["op"] == "connect":
            out["connections"] += 1
        elif kind == "process":
            out["processes"] += 1
        elif kind == "file":
            out["files"] += 1
        elif kind == "aws":
            out["aws"] += 1
    return out


def _weighted_median(pairs: list[tuple[float, int]]) -> float:
    pairs.sort()
    total = sum(n for _, n in pairs)
    seen = 0
    for value, n in pairs:
        seen += n
        if seen * 2 >= total:
            return value
    return pairs[-1][0] if pairs else 0.0


def median_mad(hist: Mapping[int, int]) -> tuple[float, float, int]:
    """Median, median absolute deviation and size of a rate histogram."""
    total = sum(hist.values())
    if not total:
        return 0.0, 0.0, 0
    median = _weighted_median([(float(b), n) for b, n in hist.items()])
    mad = _weighted_median([(abs(b - median), n) for b, n in hist.items()])
    return median, mad, total


def rate_threshold(hist: Mapping[int, int], settings: Settings) -> float | None:
    """The count above which one invocation's rate is a jump, or None."""
    median, mad, total = median_mad(hist)
    if total < 10:
        return None
    return median + max(
        float(settings.rate_min_delta), settings.rate_mads * 1.4826 * mad
    )


def is_live(stats: SigStats, info: VersionInfo | None, settings: Settings) -> bool:
    """Whether a signature has not decayed out of the profile."""
    if info is None:
        return True
    return info.last_seen - stats.last_seen <= settings.decay_seconds


def is_baseline(stats: SigStats, info: VersionInfo | None, settings: Settings) -> bool:
    """Whether a signature is part of the learned baseline of its version.

    Learned means seen before the version became stable (behaviour first seen
    afterwards stays under alert) and not decayed.
    """
    if info is None or not is_live(stats, info, settings):
        return False
    return info.stable_at is None or stats.first_seen <= info.stable_at


def becomes_stable(
    info: VersionInfo | None,
    prior: str | None,
    invocations: int,
    first_seen: float,
    last_seen: float,
    last_new_at: float | None,
    settings: Settings,
) -> bool:
    """Whether a version crosses the learning thresholds with these totals."""
    if info is not None and info.stable_at is not None:
        return False
    needed = (
        settings.relearn_min_invocations if prior else settings.learn_min_invocations
    )
    if invocations < needed:
        return False
    quiet_since = last_new_at if last_new_at is not None else first_seen
    quiet = settings.learn_quiet_seconds
    return last_seen - quiet_since >= quiet and last_seen - first_seen >= quiet
