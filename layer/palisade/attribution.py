"""Which package made a call: the first frame outside the standard library.

Walking starts at the caller of the audited operation and skips frames of the
standard library, of Palisade and of wrapt. The first other frame names the event's
``module`` (top-level package of its module, ``__main__`` for a script). Frames of
the Lambda runtime (awslambdaric, scripts directly in ``/var/runtime`` or
``LAMBDA_RUNTIME_DIR``) are remembered but
walked past: ``<runtime>`` is the answer only when nothing else is on the stack;
``<unknown>`` when no frame qualifies at all (for example an executor thread that
runs only standard-library code).

Each code object is classified once and cached. The walk uses ``sys._getframe`` and
``f_code``, which raise nested audit events: callers hold the hook's reentrancy
guard. Limitation: code objects shared by several modules (rare: ``exec`` of the
same code under different globals) keep the first module seen.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import CodeType, FrameType

RUNTIME = "<runtime>"
UNKNOWN = "<unknown>"

_SKIP = ""
_RUNTIME_PACKAGES = frozenset({"awslambdaric", "bootstrap", "lambda_runtime_client"})
_cache: dict[CodeType, str] = {}


def _prefixes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    skip: set[str] = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            skip.add(os.path.realpath(path) + os.sep)
            skip.add(os.path.abspath(path) + os.sep)
    skip.add(os.path.dirname(os.path.abspath(os.__file__)) + os.sep)
    here = os.path.dirname(os.path.abspath(__file__))
    own = {here + os.sep, os.path.realpath(here) + os.sep}
    wrapt_mod = sys.modules.get("wrapt")
    wrapt_file = getattr(wrapt_mod, "__file__", None)
    if wrapt_file:
        wrapt_dir = os.path.dirname(os.path.abspath(wrapt_file))
        own.add(wrapt_dir + os.sep)
        own.add(os.path.realpath(wrapt_dir) + os.sep)
    return tuple(sorted(skip)), tuple(sorted(own))


def _runtime_dirs() -> frozenset[str]:
    dirs = {"/var/runtime"}
    configured = os.environ.get("LAMBDA_RUNTIME_DIR")
    if configured:
        dirs.add(os.path.abspath(configured))
        dirs.add(os.path.realpath(configured))
    return frozenset(dirs)


_STDLIB, _OWN = _prefixes()
_RUNTIME_DIRS = _runtime_dirs()


def refresh() -> None:
    """Recompute the skipped locations (after wrapt is imported) and the cache."""
    global _STDLIB, _OWN, _RUNTIME_DIRS
    _STDLIB, _OWN = _prefixes()
    _RUNTIME_DIRS = _runtime_dirs()
    _cache.clear()


def _classify(code: CodeType, frame: FrameType) -> str:
    filename = code.co_filename
    if filename.startswith(_OWN):
        return _SKIP
    if "/awslambdaric/" in filename or os.path.dirname(filename) in _RUNTIME_DIRS:
        # By file as well as by name: the bootstrap script and ``python -m
        # awslambdaric`` run as __main__. Packages under the runtime directory
        # (the bundled boto3) are not the runtime.
        return RUNTIME
    if filename.startswith("<frozen "):
        return _SKIP
    if filename.startswith(_STDLIB) and not (
        "site-packages" in filename or "dist-packages" in filename
    ):
        return _SKIP
    name = frame.f_globals.get("__name__")
    if not isinstance(name, str) or not name:
        return UNKNOWN
    top = name.partition(".")[0]
    if top in _RUNTIME_PACKAGES:
        return RUNTIME
    return top


def module_of_caller(start: int = 1) -> str:
    """Attribute the current call; ``start`` frames above this function first."""
    try:
        frame: FrameType | None = sys._getframe(start + 1)
    except ValueError:
        return UNKNOWN
    runtime = False
    cache = _cache
    while frame is not None:
        code = frame.f_code
        found = cache.get(code)
        if found is None:
            found = cache[code] = _classify(code, frame)
        if found:
            if found != RUNTIME:
                return found
            runtime = True
        frame = frame.f_back
    return RUNTIME if runtime else UNKNOWN
