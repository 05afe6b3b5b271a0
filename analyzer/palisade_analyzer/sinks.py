"""Alert sinks: JSON lines (stdout or a file), webhook, SNS, EventBridge.

Each sink takes formatted alert documents (native JSON or OCSF, chosen once per
:class:`Dispatcher`). A failing sink is logged and counted and never stops the
others nor the ingest that raised the alerts: alerts are stored before they are
sent, so ``palisade alerts`` still shows them.

Limitation: delivery is at most once. A sink that fails is not retried, and an
alert whose process dies between commit and send is stored but never sent; a
repeat of an alert is never sent, even when its severity rises.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import IO, Any, Protocol

from .model import Alert
from .ocsf import alert_to_ocsf

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Something that takes alert documents."""

    name: str

    def send(self, docs: Sequence[dict[str, Any]]) -> None:
        """Deliver the documents; raise on failure."""
        ...


class JsonLinesSink:
    """One JSON object per line, to a stream or appended to a file."""

    def __init__(self, path: str | None = None, stream: IO[str] | None = None):
        self.name = f"file:{path}" if path else "stdout"
        self._path = path
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, docs: Sequence[dict[str, Any]]) -> None:
        """Write each document as one line."""
        text = "".join(json.dumps(doc, sort_keys=True) + "\n" for doc in docs)
        with self._lock:
            if self._path:
                with open(self._path, "a", encoding="utf-8") as handle:
                    handle.write(text)
            else:
                stream = self._stream or sys.stdout
                stream.write(text)
                stream.flush()


class WebhookSink:
    """HTTP POST of ``{"alerts": [...]}`` as JSON to a URL."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.name = f"webhook:{url}"
        self.url = url
        self.timeout = timeout

    def send(self, docs: Sequence[dict[str, Any]]) -> None:
        """POST the documents; raise on a non-2xx answer."""
        body = json.dumps({"alerts": list(docs)}).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"content-type": "application/json", "user-agent": "palisade"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook {self.url} answered {response.status}")


class SNSSink:
    """One SNS message per alert."""

    def __init__(self, topic_arn: str, client: Any = None):
        self.name = f"sns:{topic_arn}"
        self.topic_arn = topic_arn
        self._client = client

    def _sns(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sns", region_name=self.topic_arn.split(":")[3])
        return self._client

    def send(self, docs: Sequence[dict[str, Any]]) -> None:
        """Publish each document."""
        for doc in docs:
            subject = f"Palisade alert {doc.get('severity', '')}".strip()[:100]
            self._sns().publish(
                TopicArn=self.topic_arn, Message=json.dumps(doc), Subject=subject
            )


class EventBridgeSink:
    """Alerts as EventBridge events (source ``palisade.analyzer``)."""

    def __init__(self, bus: str, client: Any = None, region: str | None = None):
        self.name = f"eventbridge:{bus}"
        self.bus = bus
        self._client = client
        self._region = region

    def _events(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("events", region_name=self._region)
        return self._client

    def send(self, docs: Sequence[dict[str, Any]]) -> None:
        """Put the documents, ten per call (the API's limit)."""
        for start in range(0, len(docs), 10):
            entries = [
                {
                    "Source": "palisade.analyzer",
                    "DetailType": "Palisade Alert",
                    "Detail": json.dumps(doc),
                    "EventBusName": self.bus,
                }
                for doc in docs[start : start + 10]
            ]
            answer = self._events().put_events(Entries=entries)
            if answer.get("FailedEntryCount"):
                raise OSError(
                    f"EventBridge refused {answer['FailedEntryCount']} event(s)"
                )


def sink_from_spec(spec: str) -> Sink:
    """A sink from a PALISADE_ANALYZER_SINKS item (``stdout``, ``file:PATH`` ...)."""
    if spec == "stdout":
        return JsonLinesSink()
    scheme, _, rest = spec.partition(":")
    if scheme == "file" and rest:
        return JsonLinesSink(path=rest)
    if scheme == "webhook" and rest:
        return WebhookSink(rest)
    if scheme == "sns" and rest:
        return SNSSink(rest)
    if scheme == "eventbridge" and rest:
        return EventBridgeSink(rest)
    raise ValueError(
        f"alert sink {spec!r}: expected stdout, file:PATH, webhook:URL, sns:ARN "
        "or eventbridge:BUS"
    )


class Dispatcher:
    """Formats new alerts once and hands them to every sink."""

    def __init__(self, sinks: Sequence[Sink], alert_format: str = "native"):
        self.sinks = list(sinks)
        self.alert_format = alert_format
        self.failures: dict[str, int] = {}

    def format(self, alert: Alert) -> dict[str, Any]:
        """The alert in this dispatcher's format."""
        return alert_to_ocsf(alert) if self.alert_format == "ocsf" else alert.to_json()

    def __call__(self, alerts: list[Alert]) -> None:
        """Send the alerts to every sink; a failing sink is logged and counted."""
        if not alerts or not self.sinks:
            return
        docs = [self.format(a) for a in alerts]
        for sink in self.sinks:
            try:
                sink.send(docs)
            except (OSError, urllib.error.URLError, ValueError, RuntimeError) as exc:
                self.failures[sink.name] = self.failures.get(sink.name, 0) + 1
                log.warning("alert sink %s failed: %s", sink.name, exc)
            except Exception:
                self.failures[sink.name] = self.failures.get(sink.name, 0) + 1
                log.exception("alert sink %s failed", sink.name)
