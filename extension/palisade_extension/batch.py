"""Building the batch the sinks receive (schema ``palisade.batch/1``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

SCHEMA = "palisade.batch/1"


def build(
    source: dict[str, str],
    records: list[dict[str, Any]],
    platform: list[dict[str, Any]],
    outside: list[dict[str, Any]],
    drops: dict[str, int],
) -> dict[str, Any]:
    """A new batch with a fresh uuid4 ``batch_id`` (kept on every re-send)."""
    batch: dict[str, Any] = {
        "schema": SCHEMA,
        "batch_id": str(uuid.uuid4()),
        "sent_at": time.time(),
        "source": dict(source),
        "records": records,
    }
    if platform:
        batch["platform"] = platform
    if outside:
        batch["outside"] = outside
    if drops:
        batch["drops"] = drops
    return batch


def is_empty(
    records: list[Any], platform: list[Any], outside: list[Any], drops: dict[str, int]
) -> bool:
    """Whether there is nothing worth a batch."""
    return not (records or platform or outside or drops)
