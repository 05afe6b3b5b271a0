"""Storage: all-or-nothing batches (injected failures, a real crash), counters
that merge the same whatever the order and partition of batches, restarts and
concurrent readers. Backend-neutral tests run on SQLite and DynamoDB + S3.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from analyzer_records import (
    FUNCTION,
    KEYS_DOC,
    TEST_SETTINGS,
    Recorder,
    encode,
    send,
    sign,
)
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.signing import KeyRing
from palisade_analyzer.sqlite_store import SQLiteStore

LEARNING = TEST_SETTINGS.replace(learn_min_invocations=10_000)


def snapshot(store, function=FUNCTION):
    """Every mergeable counter of a function's profiles."""
    out = {}
    for v in store.versions(function):
        sigs = sorted(
            (
                s.signature,
                s.kind,
                s.sensitivity,
                s.count,
                s.invocations,
                s.first_seen,
                s.last_seen,
                tuple(sorted(s.packages)),
                s.cold,
            )
            for s in store.signatures(function, v.version)
        )
        out[v.version] = {
            "counters": (
                v.invocations,
                v.events,
                v.first_seen,
                v.last_seen,
                v.inits,
                v.cold_starts,
            ),
            "sigs": sigs,
            "rates": store.rates(function, v.version),
        }
    return out


def _records(n=12):
    rec = Recorder()
    records = []
    for i in range(n):
        r = rec.benign(i)
        if i % 3 == 0:
            for ev in r["events"]:
                if ev["kind"] == "file":
                    ev["module"] = "PIL"
        records.append(r)
    records.append(
        rec.record(
            [("code", "import", "json", {}, "app")], request_id="init", cold=True
        )
    )
    records[0]["cold_start"] = True
    return rec, records


@pytest.fixture
def store_factory(request, tmp_path, aws_env):
    """Fresh stores of the parametrized backend, one per call."""
    made = []
    if request.param == "sqlite":

        def make():
            st = SQLiteStore(str(tmp_path / f"{uuid.uuid4().hex}.db"))
            made.append(st)
            return st

        yield make
    else:
        from moto import mock_aws
        from palisade_analyzer.aws_store import AWSStore

        with mock_aws():

            def make(**kwargs):
                name = uuid.uuid4().hex[:10]
                st = AWSStore(
                    table_prefix=f"t{name}-",
                    bucket=f"b{name}",
                    region="us-east-1",
                    **kwargs,
                )
                st.create_tables()
                made.append(st)
                return st

            yield make
    for st in made:
        st.close()


@pytest.mark.parametrize("store_factory", ["sqlite", "aws"], indirect=True)
def test_counters_merge_whatever_the_order_and_partition(store_factory):
    """GIVEN the same records WHEN shipped in different batches and orders THEN
    every counter (counts, invocations, first/last seen, packages, rates) agrees."""
    rec, records = _records()
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    arrangements = {
        "one batch": [records],
        "singles": [[r] for r in records],
        "reversed": [[r] for r in reversed(records)],
        "shuffled 5/4/4": [shuffled[:5], shuffled[5:9], shuffled[9:]],
    }
    snapshots = {}
    for name, batches in arrangements.items():
        store = store_factory()
        ing = Ingestor(store, KeyRing.from_document(KEYS_DOC), LEARNING)
        for group in batches:
            assert send(ing, rec.batch(group)).status == 202
        snapshots[name] = snapshot(store)
    first = snapshots["one batch"]
    assert first["1"]["counters"][0] == 12  # the init record is not an invocation
    for name, snap in snapshots.items():
        assert snap == first, name


def _batch_with_many_signatures(rec, n=30):
    events = [
        ("file", "read", f"/srv/data/part-{chr(97 + i % 26)}{i // 26}.dat", {}, "app")
        for i in range(n)
    ]
    return rec.batch([rec.record(events), rec.benign(1)])


def test_sqlite_failure_mid_batch_leaves_nothing(sqlite_store, keys, monkeypatch):
    """A failure after the trail and counters are written rolls the batch back."""
    ing = Ingestor(sqlite_store, keys, TEST_SETTINGS)
    rec = Recorder()
    doc = _batch_with_many_signatures(rec)
    calls = []

    def fail(conn, delta):
        calls.append(1)
        raise RuntimeError("injected failure while writing alerts")

    monkeypatch.setattr(sqlite_store, "_upsert_alerts", fail)
    result = send(ing, doc)
    monkeypatch.undo()

    assert calls and (result.status, result.code) == (500, "internal_error")
    assert not sqlite_store.has_batch(FUNCTION, doc["batch_id"])
    assert sqlite_store.trail(FUNCTION) == []
    assert sqlite_store.signatures(FUNCTION, "1") == []
    assert sqlite_store.version(FUNCTION, "1") is None
    retry = send(ing, doc)
    assert retry.status == 202
    assert sqlite_store.version(FUNCTION, "1").invocations == 2


def test_sqlite_process_crash_mid_batch_leaves_nothing(tmp_path):
    """A writer killed (os._exit) inside the transaction leaves no trace."""
    db = tmp_path / "crash.db"
    rec = Recorder()
    doc = _batch_with_many_signatures(rec)
    body = encode(doc)
    (tmp_path / "body.json").write_bytes(body)
    here = Path(__file__).resolve().parent
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(here)!r})
        from analyzer_records import KEYS_DOC, TEST_SETTINGS, sign
        from palisade_analyzer.ingest import Ingestor
        from palisade_analyzer.signing import KeyRing
        from palisade_analyzer.sqlite_store import SQLiteStore
        store = SQLiteStore({str(db)!r})
        def crash(conn, delta):
            os._exit(3)
        store._upsert_alerts = crash
        body = open({str(tmp_path / "body.json")!r}, "rb").read()
        Ingestor(store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS).ingest(
            body, sign(body))
        sys.exit(0)
    """)
    child = subprocess.run(
        [sys.executable, "-c", script], timeout=60, capture_output=True, text=True
    )
    assert child.returncode == 3, child.stderr

    store = SQLiteStore(str(db))
    try:
        assert not store.has_batch(FUNCTION, doc["batch_id"])
        assert store.trail(FUNCTION) == [] and store.functions() == []
        ing = Ingestor(store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
        assert ing.ingest(body, sign(body)).status == 202
        assert len(store.signatures(FUNCTION, "1")) > 30
    finally:
        store.close()


@pytest.mark.parametrize("store_factory", ["aws"], indirect=True)
def test_aws_failure_mid_batch_retry_counts_once(store_factory, tmp_path):
    """DynamoDB: a failure between transactions is not a stored batch; the retry
    applies only the missing chunks, so the result equals one clean application."""
    rec = Recorder()
    doc = _batch_with_many_signatures(rec)
    store = store_factory(transaction_items=8)
    ing = Ingestor(store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    real = store._transact
    calls = []

    def flaky(items):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected failure between transactions")
        return real(items)

    store._transact = flaky
    failed = send(ing, doc)
    assert (failed.status, failed.code) == (500, "internal_error")
    assert not store.has_batch(FUNCTION, doc["batch_id"])
    assert store.trail(FUNCTION) == [] and store.invocations(FUNCTION) == []

    assert send(ing, doc).status == 202
    assert send(ing, doc).status == 200

    reference = SQLiteStore(str(tmp_path / "ref.db"))
    ref_ing = Ingestor(reference, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    assert send(ref_ing, doc).status == 202
    assert snapshot(store) == snapshot(reference)
    assert len(store.trail(FUNCTION)) == len(reference.trail(FUNCTION))
    reference.close()


def test_sqlite_keeps_everything_across_restart(tmp_path, keys):
    """Closing and reopening the file loses nothing, and batch ids stay known."""
    path = str(tmp_path / "a.db")
    rec = Recorder()
    docs = [rec.batch([rec.benign(i)]) for i in range(5)]
    store = SQLiteStore(path)
    ing = Ingestor(store, keys, TEST_SETTINGS)
    for doc in docs:
        send(ing, doc)
    before = snapshot(store)
    store.close()

    again = SQLiteStore(path)
    try:
        assert snapshot(again) == before
        ing2 = Ingestor(again, keys, TEST_SETTINGS)
        assert send(ing2, docs[0]).code == "duplicate"
        assert again.stats()["batches.stored"] == 5
    finally:
        again.close()


def test_sqlite_readers_see_whole_batches_only(tmp_path, keys):
    """While one writer applies batches, readers on other connections (threads
    and a second store on the same file) never see a half-applied batch."""
    path = str(tmp_path / "a.db")
    writer_store = SQLiteStore(path)
    reader_store = SQLiteStore(path)
    ing = Ingestor(writer_store, keys, TEST_SETTINGS)
    rec = Recorder()
    docs = [rec.batch([rec.benign(i), rec.benign(i + 100)]) for i in range(25)]
    done = threading.Event()
    problems = []

    def read():
        checks = 0
        while not done.is_set() and checks < 5000:
            checks += 1
            for st in (reader_store, writer_store):
                info = st.version(FUNCTION, "1")
                if info is None:
                    continue
                conn = st._conn()
                conn.execute("BEGIN")
                try:
                    n = conn.execute(
                        "SELECT invocations FROM versions WHERE function = ?",
                        (FUNCTION,),
                    ).fetchone()[0]
                    m = conn.execute(
                        "SELECT count(*) FROM invocations WHERE function = ?",
                        (FUNCTION,),
                    ).fetchone()[0]
                finally:
                    conn.execute("COMMIT")
                if n != m or n % 2:
                    problems.append((n, m))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for doc in docs:
            assert send(ing, doc).status == 202
    finally:
        done.set()
        for t in readers:
            t.join(timeout=30)
    assert problems == []
    assert reader_store.version(FUNCTION, "1").invocations == 50
    writer_store.close()
    reader_store.close()


def test_batch_json_lines_partitioned_for_athena(aws_env):
    """The AWS trail is JSON lines at trail/function=<f>/date=YYYY-MM-DD/<id>.jsonl."""
    from moto import mock_aws
    from palisade_analyzer.aws_store import AWSStore

    with mock_aws():
        store = AWSStore(table_prefix="p-", bucket="trail-bucket", region="us-east-1")
        store.create_tables()
        ing = Ingestor(store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
        rec = Recorder()
        doc = rec.batch([rec.benign(1)])
        assert send(ing, doc).status == 202
        listing = store.s3.list_objects_v2(Bucket="trail-bucket", Prefix="trail/")
        keys = [o["Key"] for o in listing["Contents"]]
        assert keys == [
            f"trail/function={FUNCTION}/date=2025-10-09/{doc['batch_id']}.jsonl"
        ]
        body = store.s3.get_object(Bucket="trail-bucket", Key=keys[0])["Body"].read()
        lines = [json.loads(x) for x in body.splitlines()]
        assert [x["type"] for x in lines[:2]] == ["batch", "invocation"]
        assert {x["type"] for x in lines[2:]} == {"event"}


def test_two_aws_instances_interleaved(aws_env):
    """Two analyzer instances (own clients, own ingestors) work on one function at
    once: each prepares its batch from the same stale profile, then both apply.
    Atomic ADDs and conditional min/max writes lose nothing: the profile equals
    the one a single SQLite instance builds from the same batches.

    (Interleaved deterministically: moto's in-process DynamoDB is not thread-safe.)
    """
    from moto import mock_aws
    from palisade_analyzer.aws_store import AWSStore

    rec, records = _records(11)  # with the init record: 12, six pairs
    docs = [rec.batch([r]) for r in reversed(records)]
    with mock_aws():
        stores = [
            AWSStore(table_prefix="multi-", bucket="multi-trail", region="us-east-1")
            for _ in range(2)
        ]
        stores[0].create_tables()
        ingestors = [
            Ingestor(st, KeyRing.from_document(KEYS_DOC), LEARNING) for st in stores
        ]
        for first, second in zip(docs[0::2], docs[1::2], strict=True):
            delta_a = ingestors[0].prepare(first, first["records"], 0.0)
            delta_b = ingestors[1].prepare(second, second["records"], 0.0)
            assert stores[1].apply(delta_b).stored
            assert stores[0].apply(delta_a).stored
        reference = SQLiteStore(":memory:")
        ref_ing = Ingestor(reference, KeyRing.from_document(KEYS_DOC), LEARNING)
        for doc in docs:
            send(ref_ing, doc)
        assert snapshot(stores[1]) == snapshot(reference)
        assert snapshot(stores[0]) == snapshot(reference)
        reference.close()
