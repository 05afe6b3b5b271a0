"""JSON views shared by the HTTP endpoints and the CLI: profile, trail, since."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from .profile import is_baseline, is_live, median_mad
from .settings import Settings
from .store import Store

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``since`` as unix seconds: a number, ISO 8601, or a duration (``15m``).

    Raises:
        ValueError: the text is none of these.
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    match = _DURATION.match(value.lower())
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return (time.time() if now is None else now) - seconds
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"since {text!r}: expected unix seconds, an ISO 8601 time "
            "(2026-01-31T12:00:00Z) or a duration such as 30s, 15m, 2h, 7d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def profile_view(
    store: Store, function: str, version: str | None, settings: Settings
) -> dict[str, Any] | None:
    """A version's profile (the latest version when none is named), or None."""
    versions = store.versions(function)
    if not versions:
        return None
    if version is None:
        info = max(versions, key=lambda v: v.last_seen)
    else:
        found = [v for v in versions if v.version == version]
        if not found:
            return None
        info = found[0]
    sigs = []
    for stats in store.signatures(function, info.version):
        doc = stats.to_json()
        doc["live"] = is_live(stats, info, settings)
        doc["baseline"] = is_baseline(stats, info, settings)
        sigs.append(doc)
    rates = {}
    for metric, hist in sorted(store.rates(function, info.version).items()):
        median, mad, total = median_mad(hist)
        rates[metric] = {
            "median": median,
            "mad": mad,
            "invocations": total,
            "histogram": {str(b): n for b, n in sorted(hist.items())},
        }
    return {
        **info.to_json(),
        "versions": [v.version for v in versions],
        "signatures": sigs,
        "rates": rates,
    }


def trail_view(
    store: Store,
    function: str,
    request_id: str | None,
    since: float | None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Invocations of a function (or one request) with their events in order.

    ``limit`` keeps the most recent invocations only.
    """
    invocations = store.invocations(function, request_id=request_id, since=since)
    if limit is not None and len(invocations) > limit:
        invocations = invocations[-limit:] if limit > 0 else []
        if invocations:
            since = min(i.started_at for i in invocations) if since is None else since
    events = store.trail(function, request_id=request_id, since=since)
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in events:
        by_key.setdefault((event.request_id, event.batch_id), []).append(
            event.to_json()
        )
    out = []
    for inv in invocations:
        doc = inv.to_json()
        doc["timeline"] = by_key.get((inv.request_id, inv.batch_id), [])
        out.append(doc)
    return {"function": function, "invocations": out}
