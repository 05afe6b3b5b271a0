"""Wrapping a handler: one invocation context and one record per call.

``protect(handler)`` (also usable as ``@protect`` or ``@protect(mode="block")``)
installs Palisade if needed, then runs each call inside an invocation context.
The handler's result is returned as is and its exceptions propagate unchanged
(same object, type, message and traceback: from Python 3.11 the wrapper removes
its own frame; on 3.10 that one frame stays). Any event value is accepted
(object, list, null, number) and extra positional or keyword arguments are
passed through.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar, overload

from . import context, guard, hook
from .errors import BlockedError

F = TypeVar("F", bound=Callable[..., Any])
_local_ids = itertools.count(1)


def _request_id(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    ctx = args[0] if args else kwargs.get("context")
    value = getattr(ctx, "aws_request_id", None)
    if isinstance(value, str) and value:
        return value
    return f"local-{os.getpid()}-{next(_local_ids)}"


def _begin(active: guard.Guard, event: Any, args: Any, kwargs: Any) -> Any:
    with hook.quiet():
        if not active.init_closed:
            active.close_init()
        cold, active.cold = active.cold, False
        invocation, token = context.begin(_request_id(args, kwargs), cold)
        invocation.event = event
        return invocation, token


def _end(
    active: guard.Guard,
    opened: Any,
    outcome: str,
    error_type: str | None,
) -> None:
    invocation, token = opened
    context.end(invocation, token)
    active.finish(invocation, outcome, error_type)


def _opened(active: guard.Guard | None, event: Any, args: Any, kwargs: Any) -> Any:
    if active is None:
        return None
    try:
        return _begin(active, event, args, kwargs)
    except Exception:
        hook.internal_error("invocation-start")
        return None


def _closed(
    active: guard.Guard | None, opened: Any, outcome: str, error_type: str | None
) -> None:
    if opened is None or active is None:
        return
    try:
        _end(active, opened, outcome, error_type)
    except Exception:
        hook.internal_error("invocation-end")


def _strip_own_frame(exc: BaseException) -> None:
    """Drop the wrapper's own entry from a user exception's traceback.

    From Python 3.11 a bare ``raise`` keeps the traceback as set here, so the
    exception reaches the runtime with exactly the frames it had without
    Palisade; on 3.10 the wrapper's frame stays.
    """
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame is sys._getframe(1):
        exc.__traceback__ = tb.tb_next


@overload
def protect(handler: F, /, **overrides: Any) -> F: ...
@overload
def protect(handler: None = None, /, **overrides: Any) -> Callable[[F], F]: ...


def protect(handler: Any = None, /, **overrides: Any) -> Any:
    """Protect a Lambda handler: install Palisade and record every invocation.

    Args:
        handler: the function (or callable object) to protect; omit it to use
            ``@protect(mode=...)`` as a decorator factory.
        overrides: settings for install (``mode``, ``policy``, ``output``, ...),
            winning over PALISADE_* variables; ignored when already installed.

    Raises:
        ConfigError, PolicyError: as :func:`palisade.install`.
    """
    if handler is None:
        return lambda fn: protect(fn, **overrides)
    guard.install(**overrides)
    if getattr(handler, "__palisade__", False):
        # Already protected (the redirect entry over a decorated handler): one
        # record per invocation, not two.
        return handler

    @functools.wraps(handler)
    def palisade_handler(event: Any = None, *args: Any, **kwargs: Any) -> Any:
        active = guard.current()
        opened = _opened(active, event, args, kwargs)
        try:
            result = handler(event, *args, **kwargs)
        except BaseException as exc:
            blocked = isinstance(exc, BlockedError)
            _closed(
                active, opened, "blocked" if blocked else "error", type(exc).__name__
            )
            _strip_own_frame(exc)
            raise
        _closed(active, opened, "success", None)
        return result

    palisade_handler.__wrapped__ = handler
    palisade_handler.__palisade__ = True  # type: ignore[attr-defined]
    return palisade_handler
