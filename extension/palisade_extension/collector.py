"""Joins the layer's records with platform telemetry, per request id.

The main loop asks ``wait_for(request_id, ...)`` after an INVOKE and then takes
everything gathered so far for the next batch. Telemetry for a request may arrive
before or after its record, and ``platform.report`` of request N usually arrives
during N+1 or at SHUTDOWN: it simply rides in a later batch.

Limitation: a record that arrives after ``wait_for`` gave up is shipped in the
next batch, although its invocation was already counted as ``missing-record``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_REMEMBERED = 512


@dataclass
class WaitResult:
    """Why ``wait_for`` returned.

    Attributes:
        record: the request's record arrived.
        runtime_done: the status of platform.runtimeDone, or None if none came.
        reason: ``record``, ``runtime-done``, ``deadline`` or ``bounded``.
    """

    record: bool
    runtime_done: str | None
    reason: str


def _bounded_put(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > _REMEMBERED:
        store.popitem(last=False)


class Collector:
    """What arrived since the last batch, guarded by one condition variable."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._records: list[tuple[dict[str, Any], str | None]] = []
        self._platform: list[dict[str, Any]] = []
        self._record_ids: OrderedDict[str, bool] = OrderedDict()
        self._runtime_done: OrderedDict[str, str] = OrderedDict()
        self.layer_seen = False
        self.telemetry_seen = False

    def add_record(self, record: dict[str, Any], journal: str | None = None) -> None:
        """Keep a validated record (and the spool file that holds it, if any)."""
        with self._cond:
            self._records.append((record, journal))
            self.layer_seen = True
            _bounded_put(self._record_ids, str(record.get("request_id")), True)
            self._cond.notify_all()

    def add_platform(self, items: list[dict[str, Any]]) -> None:
        """Keep Telemetry API records; note runtimeDone per request."""
        with self._cond:
            self.telemetry_seen = True
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                    continue
                self._platform.append(item)
                body = item.get("record")
                if item["type"] == "platform.runtimeDone" and isinstance(body, dict):
                    request_id = str(body.get("requestId"))
                    status = str(body.get("status", "unknown"))
                    _bounded_put(self._runtime_done, request_id, status)
            self._cond.notify_all()

    def has_record(self, request_id: str) -> bool:
        with self._cond:
            return request_id in self._record_ids

    def wait_for(
        self,
        request_id: str,
        deadline: float,
        record_wait_s: float,
        telemetry: bool,
    ) -> WaitResult:
        """Wait for the request's record, bounded by runtimeDone and the deadline.

        Args:
            request_id: the INVOKE's request id.
            deadline: monotonic time after which waiting stops whatever happens.
            record_wait_s: how long to keep waiting for the record once the
                runtime is known to be done (or, when neither telemetry nor the
                layer has ever been heard from, from now). Without any sign of
                the layer so far, runtimeDone ends the wait at once: the layer
                sends its record before the handler returns, so a layer that is
                there has normally delivered it before runtimeDone.
            telemetry: whether the Telemetry API subscription succeeded.
        """
        with self._cond:
            done_at: float | None = None
            if not telemetry and not self.layer_seen:
                deadline = min(deadline, time.monotonic() + record_wait_s)
            while True:
                now = time.monotonic()
                if request_id in self._record_ids:
                    return WaitResult(
                        True, self._runtime_done.get(request_id), "record"
                    )
                status = self._runtime_done.get(request_id)
                if status is not None and done_at is None:
                    done_at = now + (record_wait_s if self.layer_seen else 0.0)
                if done_at is not None and now >= done_at:
                    return WaitResult(False, status, "runtime-done")
                if now >= deadline:
                    return WaitResult(False, status, "deadline")
                limit = deadline if done_at is None else min(deadline, done_at)
                self._cond.wait(max(0.0, limit - now))

    def wait_platform(self, request_id: str, kind: str, timeout: float) -> bool:
        """Wait up to ``timeout`` for a platform record of ``kind`` for a request."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in reversed(self._platform):
                    body = item.get("record")
                    if (
                        item.get("type") == kind
                        and isinstance(body, dict)
                        and body.get("requestId") == request_id
                    ):
                        return True
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def take(self) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
        """Hand over records, their spool files and platform records; start empty."""
        with self._cond:
            records = [record for record, _ in self._records]
            journals = [path for _, path in self._records if path]
            platform = self._platform
            self._records = []
            self._platform = []
            return records, journals, platform
