"""Streams of varied, realistic benign events for the demo's three functions.

Every event starts from a real AWS sample (``events/*.json``, unchanged) and varies
what a live system varies: object keys, sizes and contents, HTTP routes and bodies,
message ids and bodies, timestamps and request ids. A seeded ``random.Random`` makes
a run reproducible.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import random
import struct
import urllib.parse
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).with_name("events")
REGION = "us-east-1"
ACCOUNT = "123456789012"


def template(name: str) -> dict[str, Any]:
    """A deep copy of one sample event (the file itself is never modified)."""
    data: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return data


def _stamp(rng: random.Random) -> datetime.datetime:
    base = datetime.datetime(2026, 12, 4, 8, 0, tzinfo=datetime.timezone.utc)
    return base + datetime.timedelta(seconds=rng.randrange(0, 6 * 3600))


# --- S3: file uploads ---------------------------------------------------------------


def _png(rng: random.Random) -> bytes:
    width, height = rng.randrange(8, 64), rng.randrange(8, 64)
    raw = b"".join(
        b"\x00" + bytes(rng.randrange(256) for _ in range(width * 3))
        for _ in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _csv(rng: random.Random) -> bytes:
    rows = ["date,sku,qty,price"]
    for _ in range(rng.randrange(5, 200)):
        rows.append(
            f"2026-11-{rng.randrange(1, 31):02d},SKU-{rng.randrange(1000, 9999)},"
            f"{rng.randrange(1, 20)},{rng.randrange(100, 99999) / 100:.2f}"
        )
    return ("\n".join(rows) + "\n").encode()


def _pdf(rng: random.Random) -> bytes:
    text = f"Invoice {rng.randrange(10000, 99999)} total {rng.randrange(10, 9000)} EUR"
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
    return (
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        "2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R>>"
        f"endobj\n4 0 obj<</Length {len(stream)}>>stream\n{stream}\nendstream endobj\n"
        "trailer<</Root 1 0 R>>\n%%EOF\n"
    ).encode()


def _json_doc(rng: random.Random) -> bytes:
    doc = {
        "device": f"sensor-{rng.randrange(100)}",
        "readings": [
            round(rng.uniform(-10, 40), 2) for _ in range(rng.randrange(3, 60))
        ],
    }
    return json.dumps(doc).encode()


def _text(rng: random.Random) -> bytes:
    words = [
        "shipment",
        "order",
        "invoice",
        "pallet",
        "carrier",
        "route",
        "depot",
        "label",
        "customs",
    ]
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(40)]
    return ("\n".join(lines) + "\n").encode()


_KINDS = [
    ("scans/Scan {n}.pdf", _pdf),
    ("invoices/invoice-{n}.pdf", _pdf),
    ("photos/IMG_{n}.png", _png),
    ("reports/sales {n}.csv", _csv),
    ("telemetry/batch-{n}.json", _json_doc),
    ("notes/note_{n}.txt", _text),
]


@dataclass
class S3Upload:
    """One benign upload: the object to create in moto, then the event to deliver."""

    bucket: str
    key: str
    body: bytes
    event: dict[str, Any]


def s3_event(rng: random.Random, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    """An ObjectCreated:Put notification for ``key`` in ``bucket``."""
    event = copy.deepcopy(template("s3Event.json"))
    record = event["Records"][0]
    record["awsRegion"] = REGION
    record["eventTime"] = (
        _stamp(rng).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    record["requestParameters"]["sourceIPAddress"] = (
        f"198.51.100.{rng.randrange(1, 254)}"
    )
    record["responseElements"]["x-amz-request-id"] = f"{rng.getrandbits(64):016X}"
    s3 = record["s3"]
    s3["configurationId"] = "file-processor-uploads"
    s3["bucket"]["name"] = bucket
    s3["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    s3["object"]["key"] = urllib.parse.quote_plus(key, safe="/")
    s3["object"]["size"] = len(body)
    s3["object"]["eTag"] = hashlib.md5(body).hexdigest()
    s3["object"]["sequencer"] = f"{rng.getrandbits(72):018X}"
    return event


def s3_uploads(rng: random.Random, bucket: str, count: int) -> list[S3Upload]:
    """``count`` uploads of varied kinds, names and sizes."""
    uploads = []
    for i in range(count):
        pattern, make = _KINDS[i % len(_KINDS)]
        key = "uploads/" + pattern.format(n=rng.randrange(1000, 99999))
        body = make(rng)
        uploads.append(S3Upload(bucket, key, body, s3_event(rng, bucket, key, body)))
    return uploads


# --- API Gateway: the orders API ----------------------------------------------------


def api_event(
    rng: random.Random,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    resource: str | None = None,
) -> dict[str, Any]:
    """A REST API (v1) proxy event for ``method path``."""
    event = copy.deepcopy(template("apiGatewayProxyEvent.json"))
    event["resource"] = resource or path
    event["path"] = path
    event["httpMethod"] = method
    agent = rng.choice(
        ["orders-web/4.2", "curl/8.5.0", "python-requests/2.32", "Mozilla/5.0"]
    )
    event["headers"] = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Host": "orders.execute-api.us-east-1.amazonaws.com",
        "User-Agent": agent,
        "X-Forwarded-For": f"203.0.113.{rng.randrange(1, 254)}",
    }
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = (
        {k: [v] for k, v in query.items()} if query else None
    )
    event["pathParameters"] = None
    event["body"] = json.dumps(body) if body is not None else None
    ctx = event["requestContext"]
    ctx["httpMethod"] = method
    ctx["path"] = "/prod" + path
    ctx["resourcePath"] = event["resource"]
    ctx["stage"] = "prod"
    ctx["requestId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    ctx["extendedRequestId"] = f"{rng.getrandbits(40):X}="
    ctx["identity"]["sourceIp"] = event["headers"]["X-Forwarded-For"]
    ctx["identity"]["userAgent"] = agent
    stamp = _stamp(rng)
    ctx["requestTime"] = stamp.strftime("%d/%b/%Y:%H:%M:%S +0000")
    ctx["requestTimeEpoch"] = int(stamp.timestamp() * 1000)
    return event


_CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne"]


@dataclass
class OrdersTraffic:
    """A client session against the orders API: creates, reads, updates, exports."""

    rng: random.Random
    orders: list[str] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    step: int = 0

    def next(self) -> dict[str, Any]:
        """The next request of the session.

        Two creates open the session; then every route comes up once per round of
        eight requests (in shuffled order, two creates per round), so a short
        stream still shows each of them.
        """
        self.step += 1
        rng = self.rng
        if self.step <= 2:
            return self._create()
        if not self.plan:
            self.plan = ["create", "get", "list", "update", "export", "download"]
            self.plan += ["create", "delete"]
            rng.shuffle(self.plan)
        choice = self.plan.pop()
        if choice == "create" or not self.orders:
            return self._create()
        order = rng.choice(self.orders)
        if choice == "get":
            return api_event(rng, "GET", f"/orders/{order}", resource="/orders/{id}")
        if choice == "list":
            return api_event(rng, "GET", "/orders")
        if choice == "update":
            status = rng.choice(["paid", "packed", "shipped", "delivered"])
            return api_event(
                rng,
                "PUT",
                f"/orders/{order}",
                {"status": status},
                resource="/orders/{id}",
            )
        if choice == "export" or (choice == "download" and not self.exports):
            report = f"orders-2026{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            self.exports.append(f"{report}.csv")
            return api_event(rng, "POST", "/exports", {"report": report})
        if choice == "download":
            name = rng.choice(self.exports)
            return api_event(rng, "GET", "/exports", query={"name": name})
        self.orders.remove(order)
        return api_event(rng, "DELETE", f"/orders/{order}", resource="/orders/{id}")

    def take(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` requests."""
        return [self.next() for _ in range(count)]

    def _create(self) -> dict[str, Any]:
        rng = self.rng
        order_id = f"ord-{rng.getrandbits(40):010x}"
        self.orders.append(order_id)
        items = [
            {
                "sku": f"SKU-{rng.randrange(1000, 9999)}",
                "qty": rng.randrange(1, 5),
                "price": rng.randrange(199, 49999) / 100,
            }
            for _ in range(rng.randrange(1, 4))
        ]
        body = {
            "order_id": order_id,
            "customer": rng.choice(_CUSTOMERS),
            "items": items,
        }
        return api_event(rng, "POST", "/orders", body)


# --- SQS: order updates for the partner ---------------------------------------------


def sqs_record(rng: random.Random, body: dict[str, Any], queue: str) -> dict[str, Any]:
    """One SQS record carrying ``body`` as JSON."""
    record = copy.deepcopy(template("sqsEvent.json")["Records"][1])
    text = json.dumps(body)
    sent = int(_stamp(rng).timestamp() * 1000)
    record["messageId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    record["receiptHandle"] = "AQEB" + "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
        for _ in range(48)
    )
    record["body"] = text
    record["md5OfBody"] = hashlib.md5(text.encode()).hexdigest()
    record["attributes"]["SentTimestamp"] = str(sent)
    record["attributes"]["ApproximateFirstReceiveTimestamp"] = str(
        sent + rng.randrange(1, 900)
    )
    record["attributes"]["ApproximateReceiveCount"] = str(rng.choice([1, 1, 1, 2]))
    record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
    record["awsRegion"] = REGION
    return record


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def sqs_batches(
    rng: random.Random, count: int, hooks_base: str, queue: str = "order-updates"
) -> list[dict[str, Any]]:
    """``count`` SQS events of 1-3 order updates; some ask for a merchant callback."""
    events = []
    for _ in range(count):
        records = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            body: dict[str, Any] = {
                "order_id": f"ord-{rng.getrandbits(40):010x}",
                "status": rng.choice(["packed", "shipped", "delivered"]),
                "customer": rng.choice(_CUSTOMERS),
            }
            if rng.random() < 0.6:
                body["callback_url"] = f"{hooks_base}/cb/{body['customer']}"
            records.append(sqs_record(rng, body, queue))
        events.append(sqs_event(records))
    return events
