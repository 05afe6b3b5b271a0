"""The PEP 578 audit hook and the one place where events are decided.

``audit_hook`` is a plain module-level function (a bound method costs four times
as much per event). It returns after one frozenset lookup for every event it does
not care about, holds a per-thread reentrancy guard while it works (the frame walk
and anything it calls raise nested events), performs no audited I/O, and guards
its whole body: Palisade's own errors are logged once with their traceback and the
operation proceeds; only :class:`~palisade.errors.BlockedError` escapes, before the
operation has run.

Wrappers in :mod:`palisade.patches` call :func:`guarded` with the same guarantees.
Handlers per event live in :mod:`palisade.observers`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import attribution, context
from .errors import BlockedError

logger = logging.getLogger(__name__)

#: endpoint host of the botocore client whose allowed call is running
aws_endpoint: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "palisade_aws_endpoint", default=None
)


class _Local(threading.local):
    busy = False
    launch: tuple[str, ...] | None = None
    skip_fork = False
    in_getaddrinfo = 0


local = _Local()

# Set by palisade.guard.install; None means inert.
engine: Any = None
output: Any = None
attribute = True
function_name = "local"
_dispatch: dict[str, Callable[[tuple[Any, ...]], None]] = {}
INTERESTING: frozenset[str] = frozenset()
_reported: set[str] = set()
errors_total = 0


def audit_hook(event: str, args: tuple[Any, ...]) -> None:
    """PEP 578 hook: turn interesting events into decided Palisade events."""
    if event not in INTERESTING:
        return
    state = local
    if state.busy or engine is None:
        return
    state.busy = True
    try:
        _dispatch[event](args)
    except BlockedError:
        raise
    except Exception:
        internal_error(event)
    finally:
        state.busy = False


def guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run an observer outside the audit hook with the hook's guarantees.

    Returns the observer's result, or None when Palisade is inert, re-entered, or
    failed (the failure is logged once). Raises only BlockedError.
    """
    state = local
    if state.busy or engine is None:
        return None
    state.busy = True
    try:
        return fn(*args)
    except BlockedError:
        raise
    except Exception:
        internal_error(getattr(fn, "__name__", "wrapper"))
        return None
    finally:
        state.busy = False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Palisade's own I/O: nothing done inside produces events."""
    state = local
    previous = state.busy
    state.busy = True
    try:
        yield
    finally:
        state.busy = previous


def internal_error(where: str) -> None:
    """Count one of Palisade's own failures; log the first of each kind."""
    global errors_total
    errors_total += 1
    try:
        context.current().errors += 1
        if where not in _reported:
            _reported.add(where)
            logger.warning(
                "palisade failed while handling %s; the operation proceeds "
                "unguarded (logged once per kind)",
                where,
                exc_info=True,
            )
    except Exception:  # logging itself failed: nothing more can be done
        pass


def observe(
    kind: str, op: str, target: str, detail: dict[str, Any]
) -> dict[str, Any] | None:
    """Decide one operation, record it, and raise if it is blocked.

    Called with the reentrancy guard held (from the hook or :func:`guarded`).

    Raises:
        BlockedError: the engine's verdict is ``blocked``; the caller must not
            perform the operation.
    """
    current_engine = engine
    if current_engine is None:
        return None
    module = attribution.module_of_caller(1) if attribute else attribution.UNKNOWN
    if kind in ("network", "dns"):
        endpoint = aws_endpoint.get()
        if endpoint is not None:
            detail["aws_endpoint"] = endpoint
    try:
        decision = current_engine.decide(kind, op, target, detail, module)
        verdict, rule = decision.verdict, decision.rule
    except Exception:
        internal_error("decide")
        verdict, rule = "allowed", "error"

    invocation = context.current()
    event = {
        "seq": context.next_seq(),
        "ts": time.time(),
        "kind": kind,
        "op": op,
        "target": target,
        "detail": detail,
        "module": module,
        "verdict": verdict,
        "rule": rule,
        "request_id": invocation.request_id,
    }
    invocation.add(event)

    if verdict == "blocked":
        _announce(event)
        raise BlockedError(kind, op, target, rule)
    return event


def _announce(event: dict[str, Any]) -> None:
    """Write a blocked verdict at once, so it survives a crash of the function."""
    try:
        if output is not None:
            output.write(
                {
                    "palisade": "blocked",
                    "function": function_name,
                    "request_id": event["request_id"],
                    "event": event,
                }
            )
    except Exception:
        internal_error("blocked-line")


def activate(
    new_engine: Any,
    new_output: Any,
    dispatch: dict[str, Callable[[tuple[Any, ...]], None]],
    attribute_events: bool,
    function: str,
) -> None:
    """Arm the hook (called by install)."""
    global engine, output, _dispatch, INTERESTING, attribute, function_name
    _dispatch = dict(dispatch)
    INTERESTING = frozenset(_dispatch)
    output = new_output
    attribute = attribute_events
    function_name = function
    engine = new_engine


def deactivate() -> None:
    """Make the hook inert (tests; the hook itself cannot be removed)."""
    global engine, INTERESTING
    engine = None
    INTERESTING = frozenset()
    _reported.clear()
