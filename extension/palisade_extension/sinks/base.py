"""What every sink offers, and the size-bounded split they share."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from palisade_extension.errors import SinkError


class Sink(Protocol):
    """Delivers one batch or raises ``SinkError``.

    Attributes:
        key: the spool sub-directory of this sink (stable across restarts).
    """

    key: str

    def send(self, batch: dict[str, Any]) -> None: ...


def encode(batch: dict[str, Any]) -> bytes:
    """The wire form of a batch: compact UTF-8 JSON."""
    return json.dumps(batch, separators=(",", ":")).encode("utf-8")


def split(
    batch: dict[str, Any],
    max_bytes: int,
    measure: Callable[[dict[str, Any]], int] | None = None,
) -> list[dict[str, Any]]:
    """Cut a batch into parts that each encode to at most ``max_bytes``.

    ``measure`` gives a part's size on the wire (default: its compact JSON).

    Parts keep the batch's fields; ``records`` are spread over them and
    ``platform``, ``outside`` and ``drops`` ride in the first part only. Part ids
    are ``<batch_id>.<n>``, so a re-sent batch splits into the same ids and the
    receiver still drops duplicates. A single record too large on its own loses
    events from its end (its ``dropped`` grows by as many) until it fits.

    Raises:
        SinkError: (permanent) even an empty part does not fit.
    """
    size = measure or (lambda part: len(encode(part)))
    if size(batch) <= max_bytes:
        return [batch]
    shell = {k: v for k, v in batch.items() if k != "records"}
    first_extras: dict[str, Any] = {
        k: shell.pop(k) for k in ("platform", "outside", "drops") if k in shell
    }
    parts: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []

    def make(records: list[dict[str, Any]], extras: bool) -> dict[str, Any]:
        part = dict(shell, records=records)
        if extras:
            part.update(first_extras)
        part["batch_id"] = f"{batch['batch_id']}.{len(parts) + 1}"
        return part

    for record in batch.get("records", []):
        candidate = make([*current, record], not parts)
        if size(candidate) <= max_bytes:
            current.append(record)
            continue
        if current:
            parts.append(make(current, not parts))
            current = []
        alone = make([record], not parts)
        if size(alone) > max_bytes:
            record = _trim(record, lambda r: size(make([r], not parts)), max_bytes)
        current = [record]
    parts.append(make(current, not parts))
    for part in parts:
        if size(part) > max_bytes:
            raise SinkError(
                f"batch {batch['batch_id']} cannot be cut below {max_bytes} bytes "
                "(its platform or outside data alone is larger)",
                permanent=True,
            )
    return parts


def _trim(record: dict[str, Any], size: Any, max_bytes: int) -> dict[str, Any]:
    events = list(record.get("events", []))
    trimmed = dict(record)
    while events:
        cut = max(1, len(events) // 4)
        events = events[:-cut]
        trimmed = dict(record, events=events)
        trimmed["dropped"] = int(record.get("dropped", 0)) + (
            len(record.get("events", [])) - len(events)
        )
        if size(trimmed) <= max_bytes:
            return trimmed
    return trimmed
