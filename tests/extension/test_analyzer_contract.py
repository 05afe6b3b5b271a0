"""The extension's sinks against the real analyzer: HTTP and stream envelopes."""

from __future__ import annotations

import os

import pytest
from ext_fakes import make_event, make_record
from palisade_extension import batch as batches
from palisade_extension.sinks.aws import _wire
from palisade_extension.sinks.http import HttpSink
from palisade_extension.sinks.signed import AnalyzerKey

ingest = pytest.importorskip("palisade_analyzer.ingest")
signing = pytest.importorskip("palisade_analyzer.signing")
server_module = pytest.importorskip("palisade_analyzer.server")
store_module = pytest.importorskip("palisade_analyzer.sqlite_store")
settings_module = pytest.importorskip("palisade_analyzer.settings")


@pytest.fixture
def ingestor(short_dir):
    keys = signing.KeyRing([signing.Key("k1", b"s3cret", ("*",))])
    store = store_module.SQLiteStore(os.path.join(short_dir, "a.db"))
    yield ingest.Ingestor(store, keys, settings_module.Settings()), store


def _batch():
    record = make_record(
        "req-1",
        events=[make_event("file", "read", "/etc/hosts", "req-1")],
    )
    return batches.build({"function": "orders", "version": "7"}, [record], [], [], {})


def test_http_sink_is_accepted_by_the_analyzer_service(ingestor):
    """The analyzer's HTTP service stores a batch from the http sink (202) and
    answers its re-send as a duplicate (200)."""
    engine, store = ingestor
    server = server_module.AnalyzerServer(engine, store, settings_module.Settings())
    server.start()
    try:
        sink = HttpSink(server.url, "k1:s3cret", 5)
        batch = _batch()
        statuses = []
        original = sink._post

        def recording(body):
            status, text = original(body)
            statuses.append(status)
            return status, text

        sink._post = recording
        sink.send(batch)
        sink.send(batch)
    finally:
        server.stop()
    assert statuses == [202, 200]


def test_stream_envelope_is_accepted_by_the_stream_consumer(ingestor):
    """A Kinesis/SQS message from the extension (signed envelope) is stored by the
    analyzer's stream ingest; the same message again is a duplicate."""
    engine, _ = ingestor
    message = _wire(AnalyzerKey.parse("k1:s3cret"))(_batch())
    first = ingest.ingest_message(engine, message)
    again = ingest.ingest_message(engine, message)
    assert (first.status, first.code) == (202, first.code)
    assert first.stored == 1
    assert again.status == 200
