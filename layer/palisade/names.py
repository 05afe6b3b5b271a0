"""What this process resolved: IP address → the names that led to it.

The ``getaddrinfo`` wrapper records every answer; a later connect to one of those
addresses is reported with the name (``resolved_from``). Several names can share
one address (CDNs, S3, loopback aliases): the most recent lookup made by the same
thread wins, then the most recent lookup in the process. Entries expire after
``TTL`` seconds, which outlives typical connection pools.
"""

from __future__ import annotations

import threading
import time

TTL = 900.0
MAX_ENTRIES = 4096

_lock = threading.Lock()
_names: dict[str, dict[str, float]] = {}
_local = threading.local()


def remember(name: str, ips: list[str]) -> None:
    """Record that ``name`` resolved to ``ips`` just now."""
    expiry = time.monotonic() + TTL
    with _lock:
        if len(_names) > MAX_ENTRIES:
            _expire(time.monotonic())
        for ip in ips:
            names = _names.setdefault(ip, {})
            names.pop(name, None)
            names[name] = expiry
    _local.last = (name, frozenset(ips))


def name_for(ip: str) -> str | None:
    """The name this process most plausibly meant by ``ip``, or None."""
    last = getattr(_local, "last", None)
    if last is not None and ip in last[1]:
        return str(last[0])
    now = time.monotonic()
    with _lock:
        names = _names.get(ip)
        if not names:
            return None
        for name, expiry in reversed(list(names.items())):
            if expiry > now:
                return name
        del _names[ip]
    return None


def clear() -> None:
    """Forget everything (after a snapshot restore, or in tests)."""
    with _lock:
        _names.clear()
    _local.last = None


def _expire(now: float) -> None:
    for ip in list(_names):
        live = {n: e for n, e in _names[ip].items() if e > now}
        if live:
            _names[ip] = live
        else:
            del _names[ip]
