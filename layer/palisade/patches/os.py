"""``os.spawn*`` on POSIX, which is ``os.fork`` plus ``os.exec*`` in the child.

Without this wrapper the parent would only see a bare ``fork`` and the exec would
happen in a child whose record is never delivered. Wrapping ``os._spawnvef``
(the function every ``spawnv*``/``spawnl*`` calls) reports one ``spawn`` with the
executable and argv before the fork, and the fork is not reported again.
"""

from __future__ import annotations

import os
from typing import Any

import wrapt

from .. import hook, observers

_applied = False


def _spawnvef(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if len(args) >= 5:
        hook.guarded(observers.on_spawnvef, *args[:5])
    try:
        return wrapped(*args, **kwargs)
    finally:
        hook.local.skip_fork = False


def apply() -> bool:
    """Wrap ``os._spawnvef`` once, where it exists."""
    global _applied
    if _applied or not hasattr(os, "_spawnvef"):
        return False
    wrapt.wrap_function_wrapper(os, "_spawnvef", _spawnvef)
    _applied = True
    return True
