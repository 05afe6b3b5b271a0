"""Analyzer: ingest + profile update throughput, and batch-to-alert latency.

Synthetic but realistic traffic: four functions shaped like the demo's (an orders
API on DynamoDB that writes CSV exports to /tmp, an S3 file processor that runs
``file`` and ``gzip``, an SQS consumer calling a partner API, a scheduled report),
one record per invocation with 6-20 events whose targets vary as live ones do
(random export names, object keys, request ids), shipped the way the extension
ships them: mostly one record per batch, sometimes several, signed with HMAC.

Throughput: every batch goes through ``Ingestor.ingest`` (size and signature
checks, JSON Schema validation, deduplication, trail insert, profile counters,
learning state and detection, one transaction per batch) on one thread; the
figure is events per second of wall time over the whole stream, on SQLite, and on
DynamoDB + S3 under moto (in-process, as an indication only: moto's speed is not
DynamoDB's).

Detection latency: once the profiles are stable (the stream spans more than the
learning quiet period), batches each carrying one novel connection are ingested;
the figure is the time from handing the batch to the ingestor to the moment its
``on_alert`` callback receives the alert, which happens after the alert row is
committed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import stats
from .errors import BenchError
from .figures import NOISE_LIMIT, Figure, judged, not_measured
from .settings import Plan

SECTION = "analyzer"
BUDGETED = (
    (
        "analyzer.sqlite_events_per_s",
        "ingest + profile update, SQLite, one core",
        "events/s",
        "analyzer_events_per_s",
    ),
    (
        "analyzer.detection_latency",
        "batch received to alert written (SQLite)",
        "ms",
        "detection_latency_ms",
    ),
)
SECRET = "bench-analyzer-signing-secret"
KEY_ID = "bench"
FUNCTIONS = ("orders-api", "file-processor", "partner-notifier", "daily-report")


def _require() -> Any:
    try:
        import palisade_analyzer
    except ImportError as exc:
        raise BenchError(
            f"the analyzer (palisade_analyzer) cannot be imported: {exc}"
        ) from exc
    for name in (
        "Ingestor",
        "KeyRing",
        "Key",
        "SQLiteStore",
        "signed_headers",
        "Settings",
    ):
        if not hasattr(palisade_analyzer, name):
            raise BenchError(f"palisade_analyzer has no {name}")
    return palisade_analyzer


class Traffic:
    """Records and batches of the four functions, in simulated time."""

    def __init__(self, seed: int, start: float) -> None:
        self.rng = random.Random(seed)
        self.clock = start
        self.batches = 0

    def _event(
        self,
        rid: str,
        seq: int,
        kind: str,
        op: str,
        target: str,
        detail: dict[str, Any],
        module: str,
    ) -> dict[str, Any]:
        self.clock += 0.002
        return {
            "seq": seq,
            "ts": self.clock,
            "kind": kind,
            "op": op,
            "target": target,
            "detail": detail,
            "module": module,
            "verdict": "allowed",
            "rule": "unlisted",
            "request_id": rid,
        }

    def _specs(self, function: str) -> list[tuple[Any, ...]]:
        rng = self.rng
        ddb = "dynamodb.us-east-1.amazonaws.com"
        if function == "orders-api":
            name = f"/tmp/exports/orders-{rng.getrandbits(32):08x}.csv"
            specs = [
                ("dns", "resolve", ddb, {"answers": ["3.218.182.10"]}, "botocore"),
                (
                    "network",
                    "connect",
                    f"{ddb}:443",
                    {
                        "ip": "3.218.182.10",
                        "port": 443,
                        "protocol": "tcp",
                        "resolved_from": ddb,
                    },
                    "urllib3",
                ),
                (
                    "aws",
                    "call",
                    f"dynamodb:{rng.choice(['PutItem', 'GetItem', 'Query'])}:orders",
                    {"service": "dynamodb", "region": "us-east-1"},
                    "app",
                ),
            ]
            if rng.random() < 0.3:
                specs += [
                    (
                        "aws",
                        "call",
                        "dynamodb:Scan:orders",
                        {"service": "dynamodb"},
                        "app",
                    ),
                    ("file", "mkdir", "/tmp/exports", {"mode": "0o777"}, "app"),
                    ("file", "create", name, {"mode": "w"}, "app"),
                    ("file", "write", name, {"mode": "w"}, "app"),
                ]
            return specs
        if function == "file-processor":
            key = f"uploads/scans/Scan {rng.randrange(1000, 99999)}.pdf"
            local = f"/tmp/work/Scan {rng.randrange(1000, 99999)}.pdf"
            s3 = "bench-uploads.s3.amazonaws.com"
            return [
                ("dns", "resolve", s3, {"answers": ["52.216.8.1"]}, "botocore"),
                (
                    "network",
                    "connect",
                    f"{s3}:443",
                    {"ip": "52.216.8.1", "port": 443, "protocol": "tcp"},
                    "urllib3",
                ),
                (
                    "aws",
                    "call",
                    f"s3:GetObject:bench-uploads/{key}",
                    {"service": "s3"},
                    "boto3",
                ),
                ("file", "create", local, {"mode": "wb"}, "s3transfer"),
                ("file", "write", local, {"mode": "wb"}, "s3transfer"),
                (
                    "process",
                    "spawn",
                    "/usr/bin/file",
                    {"argv": ["file", "--brief", "--mime-type", local]},
                    "docmeta",
                ),
                ("file", "read", local, {"mode": "rb"}, "app"),
                (
                    "process",
                    "spawn",
                    "/usr/bin/gzip",
                    {"argv": ["gzip", "-9", "-f", "-k", local]},
                    "app",
                ),
                (
                    "aws",
                    "call",
                    f"s3:PutObject:bench-processed/processed/{key}.gz",
                    {"service": "s3"},
                    "boto3",
                ),
                ("file", "delete", local + ".gz", {}, "app"),
                ("file", "delete", local, {}, "app"),
            ]
        if function == "partner-notifier":
            specs = []
            for _ in range(rng.choice([1, 1, 2, 3])):
                specs += [
                    (
                        "dns",
                        "resolve",
                        "api.partner.example",
                        {"answers": ["192.0.2.10"]},
                        "partner_sdk",
                    ),
                    (
                        "network",
                        "connect",
                        "api.partner.example:443",
                        {"ip": "192.0.2.10", "port": 443, "protocol": "tcp"},
                        "partner_sdk",
                    ),
                ]
                if rng.random() < 0.6:
                    specs += [
                        ("dns", "resolve", "hooks.partner.example", {}, "app"),
                        (
                            "network",
                            "connect",
                            "hooks.partner.example:443",
                            {"ip": "192.0.2.11", "port": 443, "protocol": "tcp"},
                            "app",
                        ),
                    ]
            return specs
        day = rng.randrange(1, 28)
        return [
            ("aws", "call", "athena:StartQueryExecution", {"service": "athena"}, "app"),
            ("aws", "call", "athena:GetQueryResults", {"service": "athena"}, "app"),
            (
                "file",
                "create",
                f"/tmp/report-2026-11-{day:02d}.csv",
                {"mode": "w"},
                "app",
            ),
            (
                "file",
                "write",
                f"/tmp/report-2026-11-{day:02d}.csv",
                {"mode": "w"},
                "app",
            ),
            (
                "aws",
                "call",
                f"s3:PutObject:reports/2026-11-{day:02d}.csv",
                {"service": "s3"},
                "boto3",
            ),
            ("code", "import", "csv", {}, "app"),
        ]

    def record(
        self, function: str, extra: list[tuple[Any, ...]] | None = None
    ) -> dict[str, Any]:
        """One invocation record of ``function`` (plus ``extra`` events)."""
        rid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.clock += self.rng.uniform(5, 40)
        started = self.clock
        specs = self._specs(function) + (extra or [])
        events = [self._event(rid, i, *spec) for i, spec in enumerate(specs)]
        return {
            "schema": "palisade.record/1",
            "function": function,
            "version": "7",
            "request_id": rid,
            "cold_start": False,
            "started_at": started,
            "duration_ms": round(self.rng.uniform(20, 400), 2),
            "outcome": "success",
            "error_type": None,
            "mode": "monitor",
            "policy_id": None,
            "layer_version": "0.1.0",
            "python": "3.12.7",
            "event_digest": [f"order-{self.rng.getrandbits(24):06x}", function],
            "events": events,
            "dropped": 0,
            "errors": 0,
        }

    def batch(self, function: str, records: list[dict[str, Any]]) -> bytes:
        """A batch as the extension ships it, serialised."""
        self.batches += 1
        return json.dumps(
            {
                "schema": "palisade.batch/1",
                "batch_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "sent_at": time.time(),
                "source": {
                    "function": function,
                    "version": "7",
                    "region": "us-east-1",
                    "extension_version": "0.1.0",
                },
                "records": records,
                "platform": [],
                "drops": {},
            },
            separators=(",", ":"),
        ).encode()

    def stream(
        self, events_wanted: int, batch_size: int | None = None
    ) -> Iterator[tuple[bytes, int]]:
        """(batch body, event count) until ``events_wanted`` events were produced.

        ``batch_size`` None: the extension's mix (mostly one record per batch).
        """
        produced = 0
        while produced < events_wanted:
            function = self.rng.choice(FUNCTIONS)
            size = batch_size or (
                1 if self.rng.random() < 0.7 else self.rng.randrange(2, 11)
            )
            records = [self.record(function) for _ in range(size)]
            count = sum(len(r["events"]) for r in records)
            produced += count
            yield self.batch(function, records), count


def _ingestor(pa: Any, store: Any, alerts: list[tuple[float, Any]]) -> Any:
    keys = pa.KeyRing([pa.Key(KEY_ID, SECRET.encode(), ("*",))])

    def on_alert(new: list[Any]) -> None:
        stamp = time.perf_counter()
        alerts.extend((stamp, a) for a in new)

    return pa.Ingestor(store, keys, pa.Settings(), on_alert=on_alert)


def _ingest_stream(
    pa: Any,
    ingestor: Any,
    traffic: Traffic,
    events: int,
    max_seconds: float,
    batch_size: int | None = None,
) -> tuple[float, int, int]:
    """(seconds, events, batches) for ingesting up to ``events`` events.

    Stops early after ``max_seconds`` so that a slow store keeps the run bounded;
    the rate is the same either way.
    """
    batches = list(traffic.stream(events, batch_size))
    signed = [
        (body, pa.signed_headers(KEY_ID, SECRET, body, int(time.time())), n)
        for body, n in batches
    ]
    total = 0
    done = 0
    began = time.perf_counter()
    for body, headers, n in signed:
        result = ingestor.ingest(body, headers)
        if result.status >= 400:
            raise BenchError(
                f"the analyzer refused a synthetic batch: {result.status} "
                f"{result.code}: {result.message}"
            )
        total += n
        done += 1
        if time.perf_counter() - began > max_seconds:
            break
    return time.perf_counter() - began, total, done


def _throughput_figure(
    fid: str,
    name: str,
    samples: list[float],
    events: int,
    budget: str | None,
    context: str,
) -> Figure:
    s = stats.summary(samples)
    return judged(
        Figure(
            id=fid,
            section=SECTION,
            name=name,
            value=s["median"],
            unit="events/s",
            median=s["median"],
            p99=None,
            n=s["n"],
            spread=s["spread"],
            context=context,
        ),
        budget,
    )


def _sqlite(pa: Any, plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    rounds = 1 if plan.quick else 3
    rates: list[float] = []
    batches_per_s: list[float] = []
    latencies: list[float] = []
    detected = 0
    with tempfile.TemporaryDirectory(prefix="palisade-bench-analyzer-") as tmp:
        r = 0
        while r < rounds:
            alerts: list[tuple[float, Any]] = []
            store = pa.SQLiteStore(str(Path(tmp) / f"analyzer-{r}.db"))
            try:
                ingestor = _ingestor(pa, store, alerts)
                traffic = Traffic(seed=100 + r, start=time.time() - 3 * 86400)
                seconds, events, batches = _ingest_stream(
                    pa, ingestor, traffic, plan.analyzer_events, plan.analyzer_seconds
                )
                rates.append(events / seconds)
                batches_per_s.append(batches / seconds)
                if r == rounds - 1 and not latencies:
                    latencies, detected = _detection(
                        pa, ingestor, traffic, alerts, plan
                    )
            finally:
                store.close()
            r += 1
            noisy = r == rounds == 3 and stats.spread(rates) > NOISE_LIMIT
            if noisy and plan.may_repeat(plan.analyzer_seconds * 3 + 30):
                rounds += 1
        # Context: the same stream in 50-record batches (a stream consumer's
        # shape), to separate the per-batch cost from the per-event cost.
        store = pa.SQLiteStore(str(Path(tmp) / "analyzer-large.db"))
        try:
            ingestor = _ingestor(pa, store, [])
            traffic = Traffic(seed=200, start=time.time() - 3 * 86400)
            seconds, events, batches = _ingest_stream(
                pa, ingestor, traffic, plan.analyzer_events, plan.analyzer_seconds, 50
            )
            large_rate = events / seconds
        finally:
            store.close()
    name_t, name_d = BUDGETED[0][1], BUDGETED[1][1]
    figures = [
        _throughput_figure(
            BUDGETED[0][0],
            name_t,
            rates,
            plan.analyzer_events,
            BUDGETED[0][3],
            f"{plan.analyzer_events:,} events per round in "
            f"{stats.median(batches_per_s):,.0f} batches/s; signature check, schema "
            "validation, trail, profiles, detection; one thread",
        )
    ]
    figures.append(
        Figure(
            id="analyzer.sqlite_events_per_s_batch50",
            section=SECTION,
            name="ingest + profile update, SQLite, 50-record batches (context)",
            value=large_rate,
            unit="events/s",
            n=1,
            context="same traffic, one batch per 50 invocations",
        )
    )
    if latencies:
        s = stats.summary(latencies)
        figures.append(
            judged(
                Figure(
                    id=BUDGETED[1][0],
                    section=SECTION,
                    name=name_d,
                    value=s["median"],
                    unit="ms",
                    median=s["median"],
                    p99=s["p99"],
                    n=s["n"],
                    spread=s["spread"],
                    context=f"{detected} of {plan.detection_samples} novel connections "
                    "alerted; from the ingest() call to the on_alert callback, which "
                    "runs after the commit",
                ),
                BUDGETED[1][3],
            )
        )
    else:
        figures.append(
            not_measured(
                BUDGETED[1][0],
                SECTION,
                name_d,
                "ms",
                f"none of {plan.detection_samples} batches with a novel connection "
                "raised an alert after the profiles were learnt",
                BUDGETED[1][3],
            )
        )
    return figures, {"sqlite_events_per_s": rates, "detection_ms": latencies}


def _detection(
    pa: Any,
    ingestor: Any,
    traffic: Traffic,
    alerts: list[tuple[float, Any]],
    plan: Plan,
) -> tuple[list[float], int]:
    """Latency of alerts on novel connections once the profile is learnt."""
    latencies: list[float] = []
    detected = 0
    for i in range(plan.detection_samples):
        host = f"203.0.113.{(i % 250) + 1}"
        port = 4000 + i
        novel = [
            (
                "network",
                "connect",
                f"{host}:{port}",
                {"ip": host, "port": port, "protocol": "tcp"},
                "app",
            ),
        ]
        record = traffic.record("orders-api", novel)
        body = traffic.batch("orders-api", [record])
        headers = pa.signed_headers(KEY_ID, SECRET, body, int(time.time()))
        before = len(alerts)
        began = time.perf_counter()
        result = ingestor.ingest(body, headers)
        if result.status >= 400:
            raise BenchError(
                f"detection batch refused: {result.code}: {result.message}"
            )
        fresh = alerts[before:]
        if fresh:
            detected += 1
            latencies.append((fresh[0][0] - began) * 1000)
    return latencies, detected


@contextlib.contextmanager
def _aws_env() -> Iterator[None]:
    names = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in [*names, "AWS_ENDPOINT_URL", "AWS_PROFILE"]}
    os.environ.update(names)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dynamodb(pa: Any, plan: Plan) -> Figure:
    fid = "analyzer.dynamodb_events_per_s"
    name = "ingest + profile update, DynamoDB + S3 under moto (indication only)"
    try:
        from moto import mock_aws
        from palisade_analyzer.aws_store import AWSStore
    except ImportError as exc:
        return not_measured(fid, SECTION, name, "events/s", f"cannot import: {exc}")
    with _aws_env(), mock_aws():
        store = AWSStore(
            table_prefix="bench-", bucket="bench-trail", region="us-east-1"
        )
        store.create_tables()
        try:
            ingestor = _ingestor(pa, store, [])
            traffic = Traffic(seed=300, start=time.time() - 3 * 86400)
            seconds, events, batches = _ingest_stream(
                pa,
                ingestor,
                traffic,
                plan.analyzer_dynamodb_events,
                plan.analyzer_seconds / 2,
            )
        finally:
            store.close()
    return Figure(
        id=fid,
        section=SECTION,
        name=name,
        value=events / seconds,
        unit="events/s",
        n=1,
        context=f"{events:,} events in {batches} batches; moto in-process, "
        "so this measures the store's request pattern, not DynamoDB",
    )


def measure(plan: Plan) -> dict[str, Any]:
    """Analyzer throughput on both stores and detection latency."""
    pa = _require()
    figures, raw = _sqlite(pa, plan)
    try:
        figures.append(_dynamodb(pa, plan))
    except BenchError as exc:
        figures.append(
            not_measured(
                "analyzer.dynamodb_events_per_s",
                SECTION,
                "ingest + profile update, DynamoDB + S3 under moto",
                "events/s",
                str(exc),
            )
        )
    return {"figures": figures, "raw": raw}
