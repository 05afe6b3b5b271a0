"""Sinks: the signed analyzer POST, JSON lines, OTLP spans, and AWS streams (moto)."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ext_fakes import make_event, make_record
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from palisade_extension import batch as batches
from palisade_extension import schemas
from palisade_extension.errors import ConfigError, SinkError
from palisade_extension.sinks import build, split
from palisade_extension.sinks.base import encode
from palisade_extension.sinks.file import FileSink
from palisade_extension.sinks.http import HttpSink
from palisade_extension.sinks.otlp import OtlpJsonExporter, OtlpSink

SOURCE = {"function": "orders", "version": "7", "region": "us-east-1"}


def _batch(n: int = 2, events_per_record: int = 2, **extra):
    records = [
        make_record(
            f"req-{i}",
            events=[
                make_event(
                    "network",
                    "connect",
                    "api.example.com:443",
                    f"req-{i}",
                    seq=j,
                    ip="127.0.0.9",
                    port=443,
                    protocol="tcp",
                )
                for j in range(events_per_record)
            ],
        )
        for i in range(n)
    ]
    batch = batches.build(SOURCE, records, [], [], {})
    batch.update(extra)
    return batch


def test_batches_match_the_schema():
    """A built batch validates against batch.schema.json."""
    batch = _batch(
        outside=[{"kind": "process", "target": "/bin/sh", "observed_at": 1.0}]
    )
    batch["drops"] = {"auth": 1}
    assert schemas.problems("batch", batch) == []


def test_http_sink_signs_and_receiver_dedups(analyzer):
    """The analyzer sink signs each batch as the contract says; a re-send of the
    same batch is a 200 duplicate that stores nothing twice."""
    sink = HttpSink(analyzer.url, "k1:s3cret", 5)
    batch = _batch()
    sink.send(batch)
    sink.send(batch)
    assert analyzer.bad_signatures == 0
    assert list(analyzer.batches) == [batch["batch_id"]]
    assert analyzer.duplicates == 1


def test_http_sink_wrong_secret_is_retryable(analyzer):
    """A 401 (wrong key) raises a retryable SinkError: the batch stays spooled."""
    sink = HttpSink(analyzer.url + "/v1/batches", "k1:wrong", 5)
    with pytest.raises(SinkError) as info:
        sink.send(_batch())
    assert not info.value.permanent
    assert analyzer.bad_signatures == 1


def test_http_sink_400_is_permanent(analyzer):
    """A 400 means the batch itself is bad: permanent, so it is dropped and counted."""
    analyzer.status = 400
    with pytest.raises(SinkError) as info:
        HttpSink(analyzer.url, "k1:s3cret", 5).send(_batch())
    assert info.value.permanent


def test_http_sink_down_is_retryable():
    """No listener: a retryable SinkError, never another exception."""
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(SinkError) as info:
        HttpSink(f"http://127.0.0.1:{port}", "k:s", 1).send(_batch())
    assert not info.value.permanent


def test_http_sink_splits_on_413(analyzer):
    """A 413 splits the batch into <id>.<n> parts that together hold every record."""
    limit = 3000
    original = analyzer.handle

    def small_only(path, headers, body):
        if len(body) > limit:
            return 413, {"error": "too-large", "message": "too large"}
        return original(path, headers, body)

    analyzer.handle = small_only
    batch = _batch(n=6, events_per_record=3)
    assert len(encode(batch)) > limit
    HttpSink(analyzer.url, "k1:s3cret", 5).send(batch)
    ids = sorted(analyzer.batches)
    assert all(i.startswith(batch["batch_id"] + ".") for i in ids)
    assert sorted(r["request_id"] for r in analyzer.records()) == [
        f"req-{i}" for i in range(6)
    ]


def test_http_sink_config_errors_name_the_variable():
    """Missing URL or a key without a colon is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="PALISADE_ANALYZER_URL"):
        HttpSink("", "a:b", 1)
    with pytest.raises(ConfigError, match="PALISADE_ANALYZER_KEY"):
        HttpSink("http://127.0.0.1:1", "nocolon", 1)


def test_file_sink_appends_json_lines(short_dir):
    """file:PATH appends one JSON batch per line."""
    path = os.path.join(short_dir, "sub", "out.jsonl")
    sink = FileSink(path)
    first, second = _batch(), _batch()
    sink.send(first)
    sink.send(second)
    with open(path) as handle:
        lines = [json.loads(line) for line in handle]
    assert [b["batch_id"] for b in lines] == [first["batch_id"], second["batch_id"]]


def test_split_keeps_every_record_and_stable_ids():
    """Splitting is deterministic (same ids on a re-send), every part fits, every
    record is kept, and extras ride in the first part only."""
    batch = _batch(n=10, events_per_record=5, platform=[{"type": "platform.start"}])
    batch["drops"] = {"auth": 1}
    limit = len(encode(batch)) // 3
    parts = split(batch, limit)
    again = split(batch, limit)
    assert [p["batch_id"] for p in parts] == [p["batch_id"] for p in again]
    assert len(parts) >= 3
    assert all(len(encode(p)) <= limit for p in parts)
    assert [r["request_id"] for p in parts for r in p["records"]] == [
        f"req-{i}" for i in range(10)
    ]
    assert "drops" in parts[0] and all("drops" not in p for p in parts[1:])
    assert all(schemas.problems("batch", p) == [] for p in parts)


def test_split_trims_an_oversized_record_and_counts_it():
    """A single record larger than the limit loses events from its end; its
    ``dropped`` grows by as many."""
    batch = _batch(n=1, events_per_record=200)
    parts = split(batch, 8000)
    record = parts[0]["records"][0]
    assert len(encode(parts[0])) <= 8000
    assert record["dropped"] == 200 - len(record["events"]) > 0


def test_otlp_sink_spans_and_events():
    """An invocation becomes a span with function/version/request_id/cold_start/
    duration attributes; each event a span event carrying its fields."""
    exporter = InMemorySpanExporter()
    batch = _batch(n=1, events_per_record=2)
    batch["outside"] = [
        {
            "kind": "process",
            "target": "/bin/sh",
            "observed_at": 1.0,
            "request_id": "req-0",
        }
    ]
    batch["drops"] = {"auth": 2}
    OtlpSink(exporter).send(batch)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    span = spans["invoke orders"]
    assert span.attributes["palisade.function"] == "orders"
    assert span.attributes["palisade.version"] == "7"
    assert span.attributes["palisade.request_id"] == "req-0"
    assert span.attributes["palisade.cold_start"] is False
    assert span.attributes["palisade.duration_ms"] == 1.5
    names = [e.name for e in span.events]
    assert names == ["network.connect", "network.connect", "outside.process"]
    assert span.events[0].attributes["target"] == "api.example.com:443"
    assert json.loads(span.events[0].attributes["detail"])["port"] == 443
    assert span.resource.attributes["service.name"] == "orders"
    assert spans["palisade.batch"].attributes["palisade.drops.auth"] == 2


def test_otlp_json_exporter_posts_to_configured_endpoint(monkeypatch):
    """Without the OTLP exporter package, the built-in one posts OTLP JSON to
    OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces with OTEL_EXPORTER_OTLP_HEADERS."""
    received: list[tuple[str, dict, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers, json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            f"http://127.0.0.1:{server.server_address[1]}",
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc")
        OtlpSink(OtlpJsonExporter()).send(_batch(n=1))
    finally:
        server.shutdown()
        server.server_close()
    path, headers, body = received[0]
    assert path == "/v1/traces"
    assert headers["x-api-key"] == "abc"
    span = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["name"] == "invoke orders"
    assert len(span["events"]) == 2


def test_otlp_export_failure_is_a_sink_error():
    """An exporter that fails makes the sink raise SinkError (spool + retry)."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    class Failing(InMemorySpanExporter):
        def export(self, spans):
            return SpanExportResult.FAILURE

    with pytest.raises(SinkError):
        OtlpSink(Failing()).send(_batch(n=1))


def test_build_leaves_out_misconfigured_sinks(short_dir, caplog):
    """A sink with missing settings is reported and left out; the others stay."""
    from palisade_extension import settings

    values = settings.load({"PALISADE_SINK": f"http,file:{short_dir}/o.jsonl,kinesis"})
    sinks = build(values["PALISADE_SINK"], values)
    assert [type(s).__name__ for s in sinks] == ["FileSink"]
    assert "PALISADE_ANALYZER_URL" in caplog.text
    assert "PALISADE_STREAM_NAME" in caplog.text


@pytest.fixture
def aws(monkeypatch):
    """moto in-process with fake credentials; no real endpoint is reachable."""
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.mark.aws
def test_kinesis_sink_partitions_by_function_and_splits(aws):
    """Each part is one Kinesis record keyed by the function name; a batch over
    the 1 MB record limit is split into parts that together hold every record."""
    import boto3
    from palisade_extension.sinks.aws import KINESIS_RECORD_MAX, KinesisSink

    client = boto3.client("kinesis")
    client.create_stream(StreamName="trail", ShardCount=1)
    batch = _batch(n=4, events_per_record=1)
    for record in batch["records"]:
        record["event_digest"] = ["x" * 200] * 64
        record["events"][0]["detail"]["blob"] = "y" * 300_000
    assert len(encode(batch)) > KINESIS_RECORD_MAX
    KinesisSink("trail", 5).send(batch)

    shard = client.describe_stream(StreamName="trail")["StreamDescription"]["Shards"][0]
    iterator = client.get_shard_iterator(
        StreamName="trail", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got = client.get_records(ShardIterator=iterator)["Records"]
    assert len(got) > 1
    assert {r["PartitionKey"] for r in got} == {"orders"}
    parts = [json.loads(r["Data"]) for r in got]
    assert all(len(r["Data"]) <= KINESIS_RECORD_MAX for r in got)
    assert sorted(rec["request_id"] for p in parts for rec in p["records"]) == [
        f"req-{i}" for i in range(4)
    ]


@pytest.mark.aws
def test_firehose_sink_writes_json_lines(aws):
    """Firehose receives each batch as a newline-terminated JSON record."""
    import boto3
    from palisade_extension.sinks.aws import FirehoseSink

    boto3.client("s3").create_bucket(Bucket="trail-bucket")
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName="trail",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": "arn:aws:s3:::trail-bucket",
        },
    )
    batch = _batch()
    FirehoseSink("trail", 5).send(batch)
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="trail-bucket")["Contents"]]
    body = b"".join(
        s3.get_object(Bucket="trail-bucket", Key=k)["Body"].read() for k in keys
    )
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert [b["batch_id"] for b in lines] == [batch["batch_id"]]


@pytest.mark.aws
def test_sqs_sink_standard_and_fifo(aws):
    """SQS gets one message per part, with the function as attribute; a FIFO queue
    deduplicates a re-sent batch by its batch id."""
    import boto3
    from palisade_extension.sinks.aws import SqsSink

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="trail")["QueueUrl"]
    batch = _batch()
    SqsSink(url, 5).send(batch)
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(messages[0]["Body"])["batch_id"] == batch["batch_id"]
    assert messages[0]["MessageAttributes"]["function"]["StringValue"] == "orders"

    fifo = sqs.create_queue(QueueName="trail.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    sink = SqsSink(fifo, 5)
    sink.send(batch)
    sink.send(batch)
    got = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 1


@pytest.mark.aws
def test_aws_sink_failure_is_a_sink_error(aws):
    """A stream that does not exist is a retryable SinkError, not a crash."""
    from palisade_extension.sinks.aws import KinesisSink

    with pytest.raises(SinkError):
        KinesisSink("missing", 1).send(_batch())
