"""Which invocation an event belongs to, kept in ``contextvars``.

The handler wrapper opens an :class:`Invocation` and sets it in a ContextVar, so
asyncio tasks and ``contextvars.copy_context`` users inherit it, and overlapping
invocations in one process (threads or tasks) keep their own buffers.

Rule for code that runs without that context (a ``threading.Thread`` started by
the handler, an executor thread doing ``getaddrinfo``, a timer): its events go to
the invocation that started most recently and is still running; when none is
running, to the INIT record while INIT is open, otherwise to the next invocation
that starts (they are adopted and stamped with its request id). With overlapping
invocations this attribution of context-less threads is a best guess.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
import time
from typing import Any

INIT = "init"
_PENDING = "pending"


class Invocation:
    """One record under construction: its identity and bounded event buffer."""

    __slots__ = (
        "cold_start",
        "dropped",
        "errors",
        "event",
        "events",
        "max_events",
        "request_id",
        "started",
        "started_at",
    )

    def __init__(self, request_id: str, max_events: int, cold_start: bool) -> None:
        self.request_id = request_id
        self.max_events = max_events
        self.cold_start = cold_start
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.errors = 0
        self.event: Any = None
        self.started_at = time.time()
        self.started = time.perf_counter()

    def add(self, event: dict[str, Any]) -> bool:
        """Keep ``event`` if there is room; count it as dropped otherwise."""
        if len(self.events) >= self.max_events:
            self.dropped += 1
            return False
        self.events.append(event)
        return True


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "palisade_invocation", default=None
)
_lock = threading.Lock()
_running: list[Invocation] = []
_init: Invocation | None = None
_between: Invocation | None = None
_max_events = 2000
_seq = itertools.count()


def reset(max_events: int) -> Invocation:
    """Start over with a fresh INIT record (at install, and in tests)."""
    global _init, _between, _max_events, _seq
    with _lock:
        _max_events = max_events
        _running.clear()
        _init = Invocation(INIT, max_events, cold_start=True)
        _between = None
        _seq = itertools.count()
    _current.set(None)
    return _init


def next_seq() -> int:
    """Process-wide event sequence number (strictly increasing)."""
    return next(_seq)


def current() -> Invocation:
    """The invocation the running code belongs to (see the module rule)."""
    invocation = _current.get()
    if invocation is not None:
        return invocation
    running = _running
    if running:
        return running[-1]
    if _init is not None:
        return _init
    return _pending()


def _pending() -> Invocation:
    global _between
    with _lock:
        if _between is None:
            _between = Invocation(_PENDING, _max_events, cold_start=False)
        return _between


def close_init() -> Invocation | None:
    """End INIT: return its record buffer once (None if already closed)."""
    global _init
    with _lock:
        init, _init = _init, None
    return init


def begin(
    request_id: str, cold_start: bool
) -> tuple[Invocation, contextvars.Token[Any]]:
    """Open an invocation, adopting events recorded while none was running."""
    global _between
    invocation = Invocation(request_id, _max_events, cold_start)
    with _lock:
        orphans, _between = _between, None
        _running.append(invocation)
    if orphans is not None:
        for event in orphans.events:
            event["request_id"] = request_id
            invocation.add(event)
        invocation.dropped += orphans.dropped
        invocation.errors += orphans.errors
    return invocation, _current.set(invocation)


def end(invocation: Invocation, token: contextvars.Token[Any]) -> None:
    """Close an invocation opened by :func:`begin`."""
    with _lock, contextlib.suppress(ValueError):
        _running.remove(invocation)
    try:
        _current.reset(token)
    except ValueError:
        # The token belongs to another context (a handler resumed elsewhere).
        _current.set(None)
