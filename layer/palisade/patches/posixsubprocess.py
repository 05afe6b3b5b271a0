"""``_posixsubprocess.fork_exec`` called directly, which raises no audit event.

Before Python 3.14 the function behind subprocess and multiprocessing's ``spawn``
and ``forkserver`` launches has no audit event. ``subprocess.Popen`` is already
reported through its own event (and is not reported twice: the launch it
announced is matched by argv); any other caller, such as
``multiprocessing.util.spawnv_passfds``, is caught by this wrapper on the module
attribute. Code that took ``from _posixsubprocess import fork_exec`` before
install (subprocess itself on 3.11+) keeps the unwrapped function. From 3.14 the
interpreter's own event is used instead.
"""

from __future__ import annotations

import sys
from typing import Any

import wrapt

from .. import hook, observers

_applied = False


def _fork_exec(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if len(args) >= 6:
        hook.guarded(observers.on_fork_exec, args[0], args[1], args[5])
    return wrapped(*args, **kwargs)


def _on_event(args: tuple[Any, ...]) -> None:
    # 3.14 raises ("_posixsubprocess.fork_exec", executable_list, args, env);
    # not exercised by the tests, which run on 3.10-3.13.
    observers.on_fork_exec(args[1], args[0], args[2] if len(args) > 2 else None)


def apply() -> bool:
    """Wrap the module attribute (before 3.14) once."""
    global _applied
    if _applied:
        return False
    if sys.version_info >= (3, 14):
        observers.DISPATCH["_posixsubprocess.fork_exec"] = _on_event
    else:
        try:
            import _posixsubprocess
        except ImportError:
            return False
        wrapt.wrap_function_wrapper(_posixsubprocess, "fork_exec", _fork_exec)
    _applied = True
    return True
