"""``otlp``: each invocation becomes a span, each event a span event.

The span is named ``invoke <function>`` (``init <function>`` for the INIT record),
starts at the record's ``started_at`` and lasts ``duration_ms``; its attributes are
``palisade.function``, ``palisade.version``, ``palisade.request_id``,
``palisade.cold_start``, ``palisade.duration_ms`` (plus ``faas.*`` equivalents).
Every event becomes a span event ``<kind>.<op>`` with its fields as attributes
(``detail`` as JSON text). Outside-view findings become ``outside.<kind>`` events
of their request's span; drop counts become attributes ``palisade.drops.<reason>``
of a ``palisade.batch`` span.

The exporter comes from the standard ``OTEL_EXPORTER_OTLP_*`` variables: the
``opentelemetry-exporter-otlp-proto-http`` exporter when it is installed, else a
small built-in OTLP/HTTP JSON exporter reading the same variables (endpoint,
traces endpoint, headers, timeout).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from palisade_extension.errors import SinkError

_NS = 1_000_000_000


class _Collect(SpanProcessor):
    """Keeps ended spans so the sink can export them synchronously."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def default_exporter() -> SpanExporter:
    """The OTLP exporter configured by the OTEL_EXPORTER_OTLP_* variables."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    except ImportError:
        return OtlpJsonExporter()
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def _flat(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


class OtlpSink:
    """Turns batches into spans and exports them."""

    key = "otlp"

    def __init__(self, exporter: SpanExporter | None = None):
        self._exporter = exporter or default_exporter()
        self._lock = threading.Lock()

    def send(self, batch: dict[str, Any]) -> None:
        with self._lock:
            spans = self._spans(batch)
            try:
                result = self._exporter.export(spans)
            except Exception as exc:
                raise SinkError(f"OTLP export failed: {exc}") from exc
            if result is not SpanExportResult.SUCCESS:
                raise SinkError(f"OTLP export of batch {batch['batch_id']} failed")

    def _spans(self, batch: dict[str, Any]) -> list[ReadableSpan]:
        source = batch["source"]
        resource = Resource.create(
            {
                "service.name": source["function"],
                "faas.name": source["function"],
                "faas.version": source["version"],
                "cloud.region": source.get("region", ""),
                "palisade.sandbox_id": source.get("sandbox_id", ""),
            }
        )
        collect = _Collect()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(collect)
        tracer = provider.get_tracer("palisade_extension")
        outside: dict[str | None, list[dict[str, Any]]] = {}
        for item in batch.get("outside", []):
            outside.setdefault(item.get("request_id"), []).append(item)
        for record in batch.get("records", []):
            request_id = record["request_id"]
            start = int(float(record.get("started_at", batch["sent_at"])) * _NS)
            end = start + int(float(record["duration_ms"]) * 1_000_000)
            verb = "init" if request_id == "init" else "invoke"
            span = tracer.start_span(
                f"{verb} {record['function']}",
                start_time=start,
                attributes={
                    "palisade.function": record["function"],
                    "palisade.version": record["version"],
                    "palisade.request_id": request_id,
                    "palisade.cold_start": bool(record["cold_start"]),
                    "palisade.duration_ms": float(record["duration_ms"]),
                    "palisade.outcome": str(record.get("outcome", "")),
                    "palisade.dropped": int(record.get("dropped", 0)),
                    "palisade.batch_id": batch["batch_id"],
                    "faas.invocation_id": request_id,
                    "faas.coldstart": bool(record["cold_start"]),
                },
            )
            for event in record.get("events", []):
                span.add_event(
                    f"{event['kind']}.{event['op']}",
                    {key: _flat(value) for key, value in event.items()},
                    timestamp=int(float(event["ts"]) * _NS),
                )
            for item in outside.pop(request_id, []):
                span.add_event(
                    f"outside.{item['kind']}",
                    {key: _flat(value) for key, value in item.items()},
                    timestamp=int(float(item["observed_at"]) * _NS),
                )
            span.end(end_time=max(end, start))
        leftovers = [item for items in outside.values() for item in items]
        drops = batch.get("drops") or {}
        if leftovers or drops:
            attributes: dict[str, Any] = {"palisade.batch_id": batch["batch_id"]}
            attributes.update({f"palisade.drops.{k}": int(v) for k, v in drops.items()})
            span = tracer.start_span(
                "palisade.batch",
                start_time=int(batch["sent_at"] * _NS),
                attributes=attributes,
            )
            for item in leftovers:
                span.add_event(
                    f"outside.{item['kind']}",
                    {key: _flat(value) for key, value in item.items()},
                    timestamp=int(float(item["observed_at"]) * _NS),
                )
            span.end(end_time=int(batch["sent_at"] * _NS))
        provider.shutdown()
        return collect.spans


def _attributes(items: Any) -> list[dict[str, Any]]:
    out = []
    for key, value in dict(items or {}).items():
        if isinstance(value, bool):
            typed: dict[str, Any] = {"boolValue": value}
        elif isinstance(value, int):
            typed = {"intValue": str(value)}
        elif isinstance(value, float):
            typed = {"doubleValue": value}
        else:
            typed = {"stringValue": str(value)}
        out.append({"key": key, "value": typed})
    return out


class OtlpJsonExporter(SpanExporter):
    """OTLP/HTTP with the JSON encoding, configured like the standard exporter.

    Reads ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` appended; default
    ``http://localhost:4318``), ``OTEL_EXPORTER_OTLP_HEADERS`` (``k=v,k=v``) and
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` (seconds, default 10).
    """

    def __init__(self) -> None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if not endpoint:
            base = os.environ.get(
                "OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"
            )
            endpoint = base.rstrip("/") + "/v1/traces"
        self.endpoint = endpoint
        self.headers = {"Content-Type": "application/json"}
        for pair in os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", "").split(","):
            name, sep, value = pair.partition("=")
            if sep and name.strip():
                self.headers[urllib.parse.unquote(name.strip())] = urllib.parse.unquote(
                    value.strip()
                )
        self.timeout = float(os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT", "10"))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = json.dumps(self.encode(spans)).encode("utf-8")
        request = urllib.request.Request(
            self.endpoint, data=body, headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                ok = 200 <= response.status < 300
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    @staticmethod
    def encode(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
        """The OTLP JSON document (ExportTraceServiceRequest) of ``spans``."""
        by_resource: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            entry = {
                "traceId": f"{context.trace_id:032x}",
                "spanId": f"{context.span_id:016x}",
                "name": span.name,
                "kind": 1,
                "startTimeUnixNano": str(span.start_time or 0),
                "endTimeUnixNano": str(span.end_time or 0),
                "attributes": _attributes(span.attributes),
                "events": [
                    {
                        "timeUnixNano": str(event.timestamp),
                        "name": event.name,
                        "attributes": _attributes(event.attributes),
                    }
                    for event in span.events
                ],
            }
            key = id(span.resource)
            by_resource.setdefault(key, (span.resource, []))[1].append(entry)
        return {
            "resourceSpans": [
                {
                    "resource": {"attributes": _attributes(resource.attributes)},
                    "scopeSpans": [
                        {"scope": {"name": "palisade_extension"}, "spans": entries}
                    ],
                }
                for resource, entries in by_resource.values()
            ]
        }

    def shutdown(self) -> None:
        return None
