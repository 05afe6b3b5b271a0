"""The Telemetry API 2022-07-01: subscription validation and delivery.

A subscription names an HTTP listener inside the sandbox; records are buffered per
subscription and POSTed as a JSON array of ``{time, type, record}`` when the buffer
reaches ``maxItems`` or ``maxBytes`` or its oldest record is ``timeoutMs`` old.
A failed POST (listener not up yet, connection refused, non-2xx) is retried with
backoff; records are never dropped for that reason while the sandbox runs.

Shortcomings:
    * Only the HTTP destination is implemented; a TCP destination is refused with a
      ``ValidationError``.
    * When a buffer would exceed ten times ``maxItems`` records while the listener
      is down, the oldest are dropped and a ``platform.logsDropped`` record is
      queued, as Lambda does; the exact threshold Lambda uses is not documented.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
TYPES = ("platform", "function", "extension")
# (default, minimum, maximum) per buffering field, from the Telemetry API reference.
BUFFERING: dict[str, tuple[int, int, int]] = {
    "maxItems": (1000, 1000, 10000),
    "maxBytes": (262144, 262144, 1048576),
    "timeoutMs": (1000, 25, 30000),
}
# Host names that mean "this sandbox" in a destination URI.
LOCAL_HOSTS = ("sandbox.localdomain", "sandbox", "localhost")
POST_TIMEOUT_S = 5.0
RETRY_MAX_S = 1.0


class SubscriptionError(ValueError):
    """A subscription request is invalid; ``error_type`` goes into the 400 body."""

    def __init__(self, message: str, error_type: str = "ValidationError"):
        super().__init__(message)
        self.error_type = error_type


def now_iso() -> str:
    """The current UTC time in the ISO-8601 form Lambda uses (milliseconds, Z)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class Subscription:
    """One extension's validated subscription."""

    extension_name: str
    schema_version: str
    url: str
    types: tuple[str, ...]
    max_items: int
    max_bytes: int
    timeout_ms: int


def parse_subscription(extension_name: str, body: bytes) -> Subscription:
    """Validate a ``PUT /telemetry`` body and return the subscription.

    Raises:
        SubscriptionError: the body does not follow the documented schema.
    """
    try:
        doc = json.loads(body or b"null")
    except ValueError as exc:
        raise SubscriptionError(f"request body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SubscriptionError(f"expected a JSON object, found {type(doc).__name__}")

    version = doc.get("schemaVersion")
    if version not in SCHEMA_VERSIONS:
        raise SubscriptionError(
            f"schemaVersion must be one of {', '.join(SCHEMA_VERSIONS)}; "
            f"found {version!r}"
        )

    url = _parse_destination(doc.get("destination"))

    types = doc.get("types")
    if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
        raise SubscriptionError(
            f"types must be a non-empty list drawn from {', '.join(TYPES)}; "
            f"found {types!r}"
        )

    buffering = doc.get("buffering", {})
    if not isinstance(buffering, dict):
        raise SubscriptionError(f"buffering must be an object; found {buffering!r}")
    unknown = set(buffering) - set(BUFFERING)
    if unknown:
        raise SubscriptionError(
            f"buffering has unknown fields {sorted(unknown)}; expected "
            f"{', '.join(BUFFERING)}"
        )
    values: dict[str, int] = {}
    for name, (default, low, high) in BUFFERING.items():
        value = buffering.get(name, default)
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise SubscriptionError(
                f"buffering.{name} must be an integer from {low} to {high}; "
                f"found {value!r}"
            )
        values[name] = value

    return Subscription(
        extension_name=extension_name,
        schema_version=version,
        url=url,
        types=tuple(dict.fromkeys(types)),
        max_items=values["maxItems"],
        max_bytes=values["maxBytes"],
        timeout_ms=values["timeoutMs"],
    )


def _parse_destination(destination: Any) -> str:
    if not isinstance(destination, dict):
        raise SubscriptionError(
            f"destination must be an object with protocol and URI; found "
            f"{destination!r}"
        )
    protocol = destination.get("protocol")
    if protocol != "HTTP":
        raise SubscriptionError(
            f"destination.protocol must be HTTP (the only protocol this sandbox "
            f"delivers to); found {protocol!r}"
        )
    uri = destination.get("URI")
    parsed = urllib.parse.urlsplit(uri) if isinstance(uri, str) else None
    if parsed is None or parsed.scheme != "http" or not parsed.hostname:
        raise SubscriptionError(
            f"destination.URI must be an http:// URI (HTTPS is not supported); "
            f"found {uri!r}"
        )
    host = parsed.hostname
    if host in LOCAL_HOSTS:
        host = "127.0.0.1"
    else:
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError(host)
        except ValueError as exc:
            raise SubscriptionError(
                f"destination.URI must point inside the sandbox "
                f"(sandbox.localdomain or a loopback address); found {uri!r}"
            ) from exc
    try:
        port = parsed.port
    except ValueError as exc:
        raise SubscriptionError(f"destination.URI has a bad port: {uri!r}") from exc
    if not port:
        raise SubscriptionError(f"destination.URI must name a port; found {uri!r}")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urllib.parse.urlunsplit(("http", netloc, parsed.path or "/", "", ""))


@dataclass
class _Buffer:
    items: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    first_at: float = 0.0
    dropped_records: int = 0
    dropped_bytes: int = 0


class Dispatcher:
    """Delivers records to one subscription from its own thread.

    Args:
        subscription: where and how to deliver.
        may_deliver: blocks until delivery is allowed (the sandbox is not frozen)
            and returns False once the sandbox is closing or still frozen; a True
            answer must be followed by one ``delivered()`` call.
        delivered: ends the delivery that ``may_deliver`` allowed.
    """

    def __init__(
        self,
        subscription: Subscription,
        may_deliver: Callable[[float], bool],
        delivered: Callable[[], None],
    ) -> None:
        self.subscription = subscription
        self.delivered: list[dict[str, Any]] = []
        self.attempts = 0
        self.failures = 0
        self._may_deliver = may_deliver
        self._delivered = delivered
        self._buffer = _Buffer()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(
            target=self._run,
            name=f"telemetry-{subscription.extension_name}",
            daemon=True,
        )
        self._thread.start()

    def push(self, item: dict[str, Any]) -> None:
        """Queue one ``{time, type, record}`` item if its category is subscribed."""
        category = item["type"].split(".", 1)[0]
        if category not in self.subscription.types:
            return
        size = len(json.dumps(item))
        with self._cond:
            buf = self._buffer
            if not buf.items:
                buf.first_at = time.monotonic()
            buf.items.append(item)
            buf.size += size
            limit = self.subscription.max_items * 10
            while len(buf.items) > limit:
                old = buf.items.pop(0)
                buf.dropped_records += 1
                buf.dropped_bytes += len(json.dumps(old))
            self._cond.notify_all()

    def close(self, flush_timeout: float = 0.0) -> None:
        """Stop delivering, after trying for up to ``flush_timeout`` seconds."""
        deadline = time.monotonic() + flush_timeout
        with self._cond:
            while self._buffer.items and time.monotonic() < deadline:
                self._cond.notify_all()
                self._cond.wait(0.02)
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=POST_TIMEOUT_S + 1)

    def flush_soon(self) -> None:
        """Deliver what is buffered without waiting for the timeout."""
        with self._cond:
            self._buffer.first_at = 0.0
            self._cond.notify_all()

    def _due(self) -> float | None:
        """Seconds until the buffer is due; 0 when due now; None when empty."""
        buf, sub = self._buffer, self.subscription
        if not buf.items:
            return None
        if len(buf.items) >= sub.max_items or buf.size >= sub.max_bytes:
            return 0.0
        return max(0.0, buf.first_at + sub.timeout_ms / 1000 - time.monotonic())

    def _take(self) -> list[dict[str, Any]]:
        buf = self._buffer
        batch: list[dict[str, Any]] = []
        if buf.dropped_records:
            batch.append(
                {
                    "time": now_iso(),
                    "type": "platform.logsDropped",
                    "record": {
                        "droppedBytes": buf.dropped_bytes,
                        "droppedRecords": buf.dropped_records,
                        "reason": "the subscriber did not accept records in time",
                    },
                }
            )
            buf.dropped_records = buf.dropped_bytes = 0
        batch.extend(buf.items)
        self._buffer = _Buffer()
        return batch

    def _run(self) -> None:
        delay = 0.02
        while True:
            with self._cond:
                while not self._closing:
                    due = self._due()
                    if due == 0.0:
                        break
                    self._cond.wait(due if due is not None else 0.5)
                if self._closing:
                    return
                batch = self._take()
            if not self._may_deliver(POST_TIMEOUT_S):
                self._requeue(batch)
                continue
            try:
                ok = self._post(batch)
            finally:
                self._delivered()
            if ok:
                delay = 0.02
                continue
            self._requeue(batch)
            with self._cond:
                self._cond.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        with self._cond:
            rest = self._buffer.items
            self._buffer.items = batch + rest
            self._buffer.size += sum(len(json.dumps(i)) for i in batch)
            self._buffer.first_at = 0.0

    def _post(self, batch: list[dict[str, Any]]) -> bool:
        body = json.dumps(batch).encode()
        request = urllib.request.Request(
            self.subscription.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        self.attempts += 1
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as resp:
                ok = 200 <= resp.status < 300
        except (OSError, urllib.error.URLError) as exc:
            self.failures += 1
            log.debug("telemetry POST to %s failed: %s", self.subscription.url, exc)
            return False
        if ok:
            self.delivered.extend(batch)
        else:
            self.failures += 1
        return ok
