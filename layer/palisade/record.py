"""The invocation record: what one invocation (or INIT) did, in the schema's shape.

See ``schemas/record.schema.json``. Beyond the schema's named fields the record
carries ``paths`` (the code and scratch roots, from LAMBDA_TASK_ROOT and TMPDIR),
``transport_fallbacks`` (records this process had to write to the output
because the extension could not take them, before this one) and, on the INIT
record only, ``policy_error`` when an unusable policy was replaced by the
built-in rules.
"""

from __future__ import annotations

import os
import platform
import time
from collections import deque
from typing import Any

from .context import INIT, Invocation

SCHEMA = "palisade.record/1"
LAYER_VERSION = "0.1.0"
DIGEST_MAX = 64
_DIGEST_NODES = 5000
PYTHON = platform.python_version()


def event_digest(value: object) -> list[str]:
    """Distinct strings of 4..200 characters in the event, at most 64, in order."""
    found: list[str] = []
    seen: set[str] = set()
    queue: deque[object] = deque([value])
    visited = 0
    while queue and len(found) < DIGEST_MAX and visited < _DIGEST_NODES:
        item = queue.popleft()
        visited += 1
        if isinstance(item, str):
            if 4 <= len(item) <= 200 and item not in seen:
                seen.add(item)
                found.append(item)
        elif isinstance(item, dict):
            queue.extend(item.values())
        elif isinstance(item, (list, tuple)):
            queue.extend(item)
    return found


def _paths() -> dict[str, str]:
    """The code and scratch roots of this execution environment (absolute)."""
    found = {}
    for name, variable, default in (
        ("task_root", "LAMBDA_TASK_ROOT", "/var/task"),
        ("tmp", "TMPDIR", "/tmp"),
    ):
        value = os.environ.get(variable) or default
        found[name] = os.path.normpath(value) if os.path.isabs(value) else default
    return found


def build(
    invocation: Invocation,
    *,
    function: str,
    version: str,
    outcome: str,
    error_type: str | None,
    mode: str,
    policy_id: str | None,
    fallbacks: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record for a finished invocation."""
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "function": function,
        "version": version,
        "request_id": invocation.request_id,
        "cold_start": invocation.cold_start,
        "started_at": invocation.started_at,
        "duration_ms": max(0.0, (time.perf_counter() - invocation.started) * 1000.0),
        "outcome": outcome,
        "error_type": error_type,
        "mode": mode,
        "policy_id": policy_id,
        "layer_version": LAYER_VERSION,
        "python": PYTHON,
        "event_digest": []
        if invocation.request_id == INIT
        else event_digest(invocation.event),
        "paths": _paths(),
        "events": list(invocation.events),
        "dropped": invocation.dropped,
        "errors": invocation.errors,
        "transport_fallbacks": fallbacks,
    }
    if extra:
        record.update(extra)
    return record
