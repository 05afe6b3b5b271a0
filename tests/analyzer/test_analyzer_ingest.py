"""Ingest: every rejection is precise, counted and stores nothing; idempotency;
signing and key binding; partial record rejection; stream payload shapes.

The whole module runs on both backends (the ``store`` fixture).
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from analyzer_records import (
    FUNCTION,
    OTHER_SECRET,
    SECRET,
    TEST_SETTINGS,
    Recorder,
    encode,
    send,
    sign,
)
from palisade_analyzer.ingest import (
    Ingestor,
    ingest_function_url,
    ingest_stream_event,
    signed_envelope,
)


def _nothing_stored(store, batch_id=None):
    assert store.functions() == []
    assert store.alerts() == []
    assert store.trail(FUNCTION) == []
    if batch_id:
        assert not store.has_batch(FUNCTION, batch_id)
    assert "batches.stored" not in store.stats()


def _good_doc():
    rec = Recorder()
    return rec.batch([rec.benign(1)])


def _case_too_large(ingestor):
    ingestor.settings = TEST_SETTINGS.replace(max_batch_bytes=100)
    body = encode(_good_doc())
    return body, sign(body)


def _case_missing_headers(ingestor):
    return encode(_good_doc()), {}


def _case_missing_one_header(ingestor):
    body = encode(_good_doc())
    headers = sign(body)
    del headers["X-Palisade-Signature"]
    return body, headers


def _case_unknown_key(ingestor):
    body = encode(_good_doc())
    return body, sign(body, key_id="nobody")


def _case_bad_timestamp(ingestor):
    body = encode(_good_doc())
    headers = sign(body)
    headers["X-Palisade-Timestamp"] = "yesterday"
    return body, headers


def _case_stale(ingestor):
    body = encode(_good_doc())
    return body, sign(body, timestamp=int(time.time()) - 3600)


def _case_future(ingestor):
    body = encode(_good_doc())
    return body, sign(body, timestamp=int(time.time()) + 3600)


def _case_bad_signature(ingestor):
    body = encode(_good_doc())
    headers = sign(body + b" ")
    return body, headers


def _case_wrong_secret(ingestor):
    body = encode(_good_doc())
    return body, sign(body, secret="not-the-right-secret-at-all")


def _case_malformed_json(ingestor):
    body = b'{"schema": "palisade.batch/1", "batch_id": '
    return body, sign(body)


def _case_not_utf8(ingestor):
    body = b"\xff\xfe\x00garbage"
    return body, sign(body)


def _case_schema_missing_field(ingestor):
    doc = _good_doc()
    del doc["batch_id"]
    body = encode(doc)
    return body, sign(body)


def _case_schema_wrong_version(ingestor):
    doc = _good_doc()
    doc["schema"] = "palisade.batch/2"
    body = encode(doc)
    return body, sign(body)


def _case_schema_array(ingestor):
    body = b"[1, 2, 3]"
    return body, sign(body)


def _case_not_bound(ingestor):
    rec = Recorder(function="orders-api")
    doc = rec.batch([rec.benign(1)])
    body = encode(doc)
    return body, sign(body)  # the thumbnailer's key claims another function


REJECTIONS = [
    (_case_too_large, 413, "batch_too_large", "limit is 100"),
    (_case_missing_headers, 401, "missing_signature", "X-Palisade-Key-Id"),
    (
        _case_missing_one_header,
        401,
        "missing_signature",
        "missing X-Palisade-Signature",
    ),
    (_case_unknown_key, 401, "unknown_key", "'nobody'"),
    (_case_bad_timestamp, 401, "bad_timestamp", "unix seconds"),
    (_case_stale, 401, "stale_timestamp", "at most 300s"),
    (_case_future, 401, "stale_timestamp", "at most 300s"),
    (_case_bad_signature, 401, "bad_signature", "does not match"),
    (_case_wrong_secret, 401, "bad_signature", "does not match"),
    (_case_malformed_json, 400, "malformed_json", "not JSON"),
    (
        _case_not_utf8,
        400,
        "malformed_json",
        "not UTF-8 (invalid byte 0xff at offset 0)",
    ),
    (_case_schema_missing_field, 400, "schema_violation", "'batch_id' is a required"),
    (_case_schema_wrong_version, 400, "schema_violation", "schema"),
    (_case_schema_array, 400, "schema_violation", "is not of type 'object'"),
    (_case_not_bound, 403, "function_not_bound", "'orders-api'"),
]


@pytest.mark.parametrize(
    ("make", "status", "code", "text"),
    REJECTIONS,
    ids=[r[0].__name__ for r in REJECTIONS],
)
def test_rejection_matrix(ingestor, store, make, status, code, text):
    """Each bad input gets its status, code and message, is counted, stores nothing."""
    body, headers = make(ingestor)

    result = ingestor.ingest(body, headers)

    assert (result.status, result.code) == (status, code)
    assert text in result.message
    assert result.to_json() == {"error": code, "message": result.message}
    assert result.stored == 0
    assert store.stats().get(f"rejected.{code}") == 1
    _nothing_stored(store)


def test_good_batch_is_stored_and_counted(ingestor, store):
    """A signed, valid batch is stored: 202, trail and profile, counters."""
    rec = Recorder()
    doc = rec.batch([rec.benign(i) for i in range(3)])

    result = send(ingestor, doc)

    assert (result.status, result.code, result.stored) == (202, "stored", 3)
    assert store.has_batch(FUNCTION, doc["batch_id"])
    assert store.functions() == [FUNCTION]
    assert len(store.trail(FUNCTION)) == sum(len(r["events"]) for r in doc["records"])
    assert store.version(FUNCTION, "1").invocations == 3
    stats = store.stats()
    assert stats["batches.stored"] == 1
    assert stats["records.stored"] == 3


def test_duplicate_batch_id_changes_nothing(ingestor, store):
    """At-least-once delivery: the same batch again answers 200 and counts nothing."""
    rec = Recorder()
    doc = rec.batch([rec.benign(1), rec.benign(2)])
    body = encode(doc)
    headers = sign(body)
    assert ingestor.ingest(body, headers).status == 202
    before = [s.to_json() for s in store.signatures(FUNCTION, "1")]

    again = ingestor.ingest(body, headers)
    resent = send(ingestor, doc)  # re-signed later: still the same batch id

    assert (again.status, again.code, again.duplicates) == (200, "duplicate", 2)
    assert resent.status == 200
    assert [s.to_json() for s in store.signatures(FUNCTION, "1")] == before
    assert store.version(FUNCTION, "1").invocations == 2
    assert len(store.trail(FUNCTION)) == sum(len(r["events"]) for r in doc["records"])
    assert store.stats()["batches.duplicate"] == 2


def test_bad_record_does_not_poison_the_batch(ingestor, store):
    """One invalid record and one of an unbound function are rejected alone."""
    rec = Recorder()
    good = rec.benign(1)
    broken = rec.benign(2)
    del broken["events"]
    foreign = rec.benign(3)
    foreign["function"] = "orders-api"
    doc = rec.batch([good, broken, foreign])

    result = send(ingestor, doc)

    assert (result.status, result.stored, result.rejected_records) == (202, 1, 2)
    invs = store.invocations(FUNCTION)
    assert [i.request_id for i in invs] == [good["request_id"]]
    assert store.functions() == [FUNCTION]
    stats = store.stats()
    assert stats["rejected_records.schema_violation"] == 1
    assert stats["rejected_records.function_not_bound"] == 1


def test_key_binding_globs(store, keys):
    """A key bound to orders-* reports orders-api, and is refused for others."""
    ing = Ingestor(store, keys, TEST_SETTINGS)
    rec = Recorder(function="orders-api")
    ok = send(ing, rec.batch([rec.benign(1)]), key_id="orders", secret=OTHER_SECRET)
    rec2 = Recorder()
    refused = send(
        ing, rec2.batch([rec2.benign(1)]), key_id="orders", secret=OTHER_SECRET
    )
    assert ok.status == 202
    assert (refused.status, refused.code) == (403, "function_not_bound")
    assert store.functions() == ["orders-api"]


def test_empty_key_ring_refuses_everything(store):
    """Without keys nothing is accepted: unsigned data never reaches the store."""
    from palisade_analyzer.signing import KeyRing

    ing = Ingestor(store, KeyRing(), TEST_SETTINGS)
    result = send(ing, _good_doc())
    assert (result.status, result.code) == (401, "unknown_key")
    _nothing_stored(store)


def test_function_url_payload(ingestor, store):
    """A Function URL request (base64 body, lower-case headers) is ingested."""
    doc = _good_doc()
    body = encode(doc)
    headers = {k.lower(): v for k, v in sign(body).items()}
    event = {
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
        "headers": headers,
    }

    answer = ingest_function_url(ingestor, event)
    bad = ingest_function_url(ingestor, {"body": "%%%", "isBase64Encoded": True})

    assert answer["statusCode"] == 202
    assert json.loads(answer["body"])["stored"] == 1
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["error"] == "malformed_body"
    assert store.stats()["rejected.malformed_body"] == 1


def test_kinesis_and_sqs_payloads(ingestor, store):
    """Stream messages carry signed envelopes; rejections are dropped and counted."""
    rec = Recorder()
    docs = [rec.batch([rec.benign(i)]) for i in range(3)]
    now = int(time.time())
    envelopes = [signed_envelope("thumb", SECRET, encode(d), now) for d in docs]
    kinesis = {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "kinesis": {
                    "data": base64.b64encode(envelopes[0]).decode(),
                    "sequenceNumber": "1",
                    "partitionKey": FUNCTION,
                },
            },
            {
                "eventSource": "aws:kinesis",
                "kinesis": {
                    "data": base64.b64encode(b"not an envelope").decode(),
                    "sequenceNumber": "2",
                    "partitionKey": FUNCTION,
                },
            },
        ]
    }
    sqs = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": "m1",
                "body": envelopes[1].decode(),
            },
            {
                "eventSource": "aws:sqs",
                "messageId": "m2",
                "body": envelopes[1].decode(),
            },
            {
                "eventSource": "aws:sqs",
                "messageId": "m3",
                "body": envelopes[2].decode(),
            },
        ]
    }

    k = ingest_stream_event(ingestor, kinesis)
    s = ingest_stream_event(ingestor, sqs)

    assert [r["status"] for r in k["results"]] == [202, 401]
    assert k["batchItemFailures"] == []
    assert [r["status"] for r in s["results"]] == [202, 200, 202]
    assert store.version(FUNCTION, "1").invocations == 3
    assert store.stats()["rejected.missing_signature"] == 1


def test_internal_failure_is_500_and_retryable(ingestor, store, monkeypatch):
    """Our own failure answers 500, stores nothing, and a stream retries it."""
    doc = _good_doc()

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(store, "load_context", broken)
    result = send(ingestor, doc)
    envelope = signed_envelope("thumb", SECRET, encode(doc), int(time.time()))
    sqs = ingest_stream_event(
        ingestor, {"Records": [{"messageId": "m1", "body": envelope.decode()}]}
    )

    assert (result.status, result.code) == (500, "internal_error")
    assert sqs["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    assert store.stats()["rejected.internal_error"] == 2
    _nothing_stored(store, doc["batch_id"])


ODD_DETAILS = [
    {"argv": [1, None, {"a": [1]}], "shell": "yes"},
    {"resolved_from": 123, "port": {"x": 1}, "ip": None, "protocol": ["tcp"]},
    {"service": 5, "operation": None, "resource": [1, 2]},
    {"answers": "not-a-list", "dst": 7},
]


@pytest.mark.parametrize("detail", ODD_DETAILS)
@pytest.mark.parametrize("kind", ["file", "process", "network", "dns", "aws", "code"])
def test_schema_valid_oddities_are_stored(sqlite_store, keys, kind, detail):
    """Odd but schema-valid detail values are stored, never a 500."""
    ing = Ingestor(sqlite_store, keys, TEST_SETTINGS)
    rec = Recorder()
    record = rec.record(
        [(kind, "op", "weird:target:[x]", detail, "app", "blocked", "builtin:odd")]
    )
    result = send(ing, rec.batch([record]))
    assert (result.status, result.stored) == (202, 1), result.message
    assert len(sqlite_store.trail(FUNCTION)) == 1


@pytest.mark.parametrize(
    "number", [b"1e400", b"NaN", b"-Infinity", b"1" + b"0" * 310 + b".5"]
)
def test_non_finite_numbers_are_malformed(ingestor, store, number):
    """Numbers JSON cannot carry portably are refused before anything is stored."""
    doc = _good_doc()
    body = encode(doc).replace(b'"duration_ms": 120.5', b'"duration_ms": ' + number)
    result = ingestor.ingest(body, sign(body))
    assert (result.status, result.code) == (400, "malformed_json")
    _nothing_stored(store)


@pytest.mark.parametrize(
    ("breakage", "status", "code"),
    [("schema", 400, "schema_violation"), ("binding", 403, "function_not_bound")],
)
def test_batch_of_only_bad_records_is_refused_whole(
    ingestor, store, breakage, status, code
):
    """When no record can be kept the batch is refused and not even its id stored."""
    rec = Recorder()
    records = [rec.benign(1), rec.benign(2)]
    for record in records:
        if breakage == "schema":
            record["events"][0]["kind"] = "telepathy"
        else:
            record["function"] = "orders-api"
    doc = rec.batch(records)

    result = send(ingestor, doc)

    assert (result.status, result.code) == (status, code)
    assert "every record" in result.message and "record 0" in result.message
    assert store.stats()[f"rejected_records.{code}"] == 2
    _nothing_stored(store, doc["batch_id"])


def _deep_body():
    return b"[" * 100_000 + b"]" * 100_000


def _surrogate_body():
    doc = _good_doc()
    doc["records"][0]["events"][0]["target"] = "/tmp/\ud800x"
    return encode(doc)  # json.dumps escapes it as \ud800


HOSTILE_BODIES = [
    (_deep_body, "malformed_json", "nested too deeply"),
    (_surrogate_body, "invalid_unicode", "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize(
    ("make", "code", "text"), HOSTILE_BODIES, ids=["deep", "surrogate"]
)
def test_hostile_bodies_are_precise_400s(ingestor, store, make, code, text):
    """Deep nesting and lone surrogates are 400s, counted, stored nowhere, and a
    stream does not retry them."""
    body = make()
    result = ingestor.ingest(body, sign(body))
    envelope = signed_envelope("thumb", SECRET, body, int(time.time()))
    sqs = ingest_stream_event(
        ingestor, {"Records": [{"messageId": "m1", "body": envelope.decode()}]}
    )

    assert (result.status, result.code) == (400, code), result.message
    assert text in result.message
    assert sqs["batchItemFailures"] == []
    assert sqs["results"] == [{"id": "m1", "status": 400, "code": code}]
    assert store.stats().get(f"rejected.{code}") == 2
    assert "rejected.internal_error" not in store.stats()
    _nothing_stored(store)


def test_surrogate_path_is_named_and_pairs_pass(ingestor, store):
    """The message names where the lone surrogate is; an escaped pair is kept."""
    body = _surrogate_body()
    result = ingestor.ingest(body, sign(body))
    assert "$.records[0].events[0].target" in result.message

    doc = _good_doc()
    doc["records"][0]["events"][0]["target"] = "/tmp/\U0001f600.png"
    body = encode(doc)
    assert b"\\ud83d\\ude00" in body
    assert send(ingestor, doc).status == 202
    assert "\U0001f600" in str(store.trail(FUNCTION))


@pytest.mark.parametrize("where", ["envelope", "sqs_body", "function_url"])
def test_hostile_stream_messages_are_not_retried(ingestor, store, where):
    """A stream message that cannot even be opened is a counted 400, not a crash."""
    if where == "envelope":
        data = b'{"schema": "palisade.signed/1", "headers": ' + b"[" * 100_000
        event = {"Records": [{"messageId": "m1", "body": data.decode()}]}
        code = "malformed_json"
    elif where == "sqs_body":
        event = {"Records": [{"messageId": "m1", "body": '{"body": "\ud800"}'}]}
        code = "invalid_unicode"
    else:
        answer = ingest_function_url(ingestor, {"body": "{\ud800}"})
        assert answer["statusCode"] == 400
        assert json.loads(answer["body"])["error"] == "invalid_unicode"
        assert store.stats()["rejected.invalid_unicode"] == 1
        return
    out = ingest_stream_event(ingestor, event)
    assert out["batchItemFailures"] == []
    assert out["results"] == [{"id": "m1", "status": 400, "code": code}]
    assert store.stats()[f"rejected.{code}"] == 1
    _nothing_stored(store)


@pytest.mark.parametrize(
    "batch_id",
    ["../../../etc/passwd", "batch id with spaces", "batch\\x00000", "a/b/c/d/e"],
)
def test_batch_id_outside_the_safe_alphabet_is_refused(ingestor, store, batch_id):
    """A batch id that could climb out of a trail key is a 400 naming the field."""
    doc = _good_doc()
    doc["batch_id"] = batch_id

    result = send(ingestor, doc)

    assert (result.status, result.code) == (400, "schema_violation")
    assert "batch_id" in result.message and "A-Za-z0-9._:-" in result.message
    assert store.stats()["rejected.schema_violation"] == 1
    _nothing_stored(store)


def test_extension_batch_ids_are_accepted(ingestor, store):
    """The ids the extension sends (uuid4, and <uuid>.<n> for split parts) pass."""
    doc = _good_doc()
    doc["batch_id"] = "6f1c1d3e-2b7a-4c1e-9a53-0d6b1c2e3f4a.2"
    assert send(ingestor, doc).status == 202


def test_trail_key_is_safe_for_any_name():
    """The S3 trail key escapes "/" in function names and batch ids alike."""
    from palisade_analyzer.aws_store import trail_key

    key = trail_key("../f", "2025-10-09", "../../../etc/passwd")
    assert key.startswith("trail/function=..%2Ff/date=2025-10-09/")
    assert key.count("/") == 3 and key.endswith("..%2F..%2F..%2Fetc%2Fpasswd.jsonl")


@pytest.mark.parametrize(
    ("where", "value"),
    [("ts", -1.0), ("ts", 1e12), ("started_at", -5.0), ("started_at", 3e11)],
)
def test_implausible_record_times_are_rejected_alone(ingestor, store, where, value):
    """A record whose times are not plausible unix seconds is rejected alone."""
    rec = Recorder()
    bad, good = rec.benign(1), rec.benign(2)
    if where == "ts":
        bad["events"][-1]["ts"] = value
    else:
        bad["started_at"] = value

    result = send(ingestor, rec.batch([bad, good]))
    alone = send(ingestor, rec.batch([bad]))

    assert (result.status, result.stored, result.rejected_records) == (202, 1, 1)
    assert (alone.status, alone.code) == (400, "implausible_timestamp")
    assert f"{where} {value!r}" in alone.message and "year 9999" in alone.message
    assert store.stats()["rejected_records.implausible_timestamp"] == 2
    assert [t.request_id for t in store.invocations(FUNCTION)] == [good["request_id"]]


def test_implausible_batch_and_finding_times(ingestor, store):
    """sent_at out of range refuses the batch; a bad outside finding is dropped."""
    doc = _good_doc()
    doc["sent_at"] = -1
    result = send(ingestor, doc)
    assert (result.status, result.code) == (400, "implausible_timestamp")
    _nothing_stored(store)

    doc = _good_doc()
    doc["outside"] = [
        {"kind": "process", "target": "/bin/x", "observed_at": 1e13},
    ]
    assert send(ingestor, doc).status == 202
    assert store.stats()["rejected_outside.implausible_timestamp"] == 1


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            b'"schema": "palisade.batch/1"',
            b'"batch_id": "x", "schema": "palisade.batch/1"',
            "batch_id",
        ),
        (
            b'"function": "thumbnailer"',
            b'"function": "orders-api", "function": "thumbnailer"',
            "function",
        ),
        (b'"cold_start": ', b'"dropped": 0, "cold_start": ', "dropped"),
    ],
    ids=["envelope", "record", "record_count"],
)
def test_duplicate_keys_are_malformed(ingestor, store, old, new, key):
    """An object with a key twice is refused: which value counts is parser-defined."""
    body = encode(_good_doc())
    assert old in body
    body = body.replace(old, new, 1)

    result = ingestor.ingest(body, sign(body))

    assert (result.status, result.code) == (400, "malformed_json")
    assert f"key {key!r} twice" in result.message
    assert store.stats()["rejected.malformed_json"] == 1
    _nothing_stored(store)
