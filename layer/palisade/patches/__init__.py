"""Wrappers where audit events lack context or do not exist.

Each module patches one library and exposes ``apply()`` (idempotent). Wrappers
run their observer through :func:`palisade.hook.guarded`: Palisade's own failures
never reach the caller, a blocked verdict raises before the wrapped call.
"""

from __future__ import annotations

from . import botocore, os, posixsubprocess, socket


def apply_all() -> list[str]:
    """Apply every patch that fits this interpreter; names of those applied."""
    applied = []
    for module in (socket, posixsubprocess, os, botocore):
        if module.apply():
            applied.append(module.__name__.rpartition(".")[2])
    return applied
