"""``socket.getaddrinfo`` answers and ``socket.listen``, which audit events miss.

The getaddrinfo wrapper decides the lookup before it happens (a blocked name is
never queried), then records the answers in the event and in
:mod:`palisade.names`, so a later connect to one of those addresses names the
host. The audit event that the real call raises is ignored while the wrapper is
active. Code that kept a reference to the original function (``from socket
import getaddrinfo`` before install) or resolves in C bypasses the wrapper; its
lookups still appear, without answers, through the audit event.

``listen`` has no audit event; the wrapper on ``socket.socket.listen`` reports it
with the bound address.
"""

from __future__ import annotations

import socket
from typing import Any

import wrapt

from .. import hook, observers

_applied = False


def _getaddrinfo(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    host = args[0] if args else kwargs.get("host")
    port = args[1] if len(args) > 1 else kwargs.get("port")
    event = hook.guarded(observers.dns, host, port)
    state = hook.local
    state.in_getaddrinfo += 1
    try:
        results = wrapped(*args, **kwargs)
    finally:
        state.in_getaddrinfo -= 1
    if event is not None:
        hook.guarded(observers.answered, event, host, results)
    return results


def _listen(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if instance is not None:
        hook.guarded(observers.on_listen, instance)
    return wrapped(*args, **kwargs)


def apply() -> bool:
    """Wrap socket.getaddrinfo and socket.socket.listen once."""
    global _applied
    if _applied:
        return False
    wrapt.wrap_function_wrapper(socket, "getaddrinfo", _getaddrinfo)
    wrapt.wrap_function_wrapper(socket, "socket.listen", _listen)
    _applied = True
    return True
