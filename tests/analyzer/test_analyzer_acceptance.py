"""The acceptance scenario, on SQLite and on DynamoDB + S3 under moto.

GIVEN 50 benign invocations of the thumbnail function (new S3 keys, new temp
names, new request ids each time)
WHEN one invocation runs a shell fed by the S3 key and connects to a new host
THEN exactly two alerts are raised (the shell, critical; the new egress host,
high), repeating it raises none but counts, and the suggested policy, enforced by
palisade.policy in block mode, lets benign invocations pass and blocks the attack.
"""

from __future__ import annotations

from analyzer_records import FUNCTION, Recorder, send
from palisade.policy import load_engine
from palisade_analyzer.schemas import first_error, validator
from palisade_analyzer.sqlite_store import SQLiteStore
from palisade_analyzer.suggest import suggest_policy


def _decisions(engine, record):
    return [
        engine.decide(e["kind"], e["op"], e["target"], e["detail"], e["module"])
        for e in record["events"]
    ]


def test_acceptance(ingestor, store):
    """Fifty benign invocations, one attack: the expected alerts, then a policy."""
    rec = Recorder()
    # One invocation per batch on SQLite; ten per batch under moto, whose
    # transactions copy every table and grow slow.
    per_batch = 1 if isinstance(store, SQLiteStore) else 10
    for start in range(0, 50, per_batch):
        records = [rec.benign(i) for i in range(start, start + per_batch)]
        result = send(ingestor, rec.batch(records))
        assert result.status == 202
        assert result.new_alerts == [], f"false alarm in invocations from {start}"
    assert store.version(FUNCTION, "1").state == "stable"

    attack = rec.malicious()
    first = send(ingestor, rec.batch([attack]))

    got = {(a.signature, a.severity) for a in first.new_alerts}
    assert got == {
        ("process:/bin/sh -c", "critical"),
        ("network:evil.example.net:80", "high"),
    }
    shell = next(a for a in first.new_alerts if a.kind == "process")
    assert "event data in arguments" in shell.reasons
    assert shell.evidence[0]["request_id"] == attack["request_id"]
    assert shell.evidence[0]["event_data"]

    again = send(ingestor, rec.batch([rec.malicious()]))
    assert again.status == 202 and again.new_alerts == []
    stored = {a.signature: a for a in store.alerts(function=FUNCTION)}
    assert set(stored) == {s for s, _ in got}
    assert all(a.count == 2 for a in stored.values())
    assert (
        stored["process:/bin/sh -c"].last_seen > stored["process:/bin/sh -c"].first_seen
    )

    # Benign variation after learning still raises nothing.
    later = send(ingestor, rec.batch([rec.benign(i) for i in range(60, 65)]))
    assert later.new_alerts == []

    policy = suggest_policy(store, FUNCTION, stage="full", min_invocations=3)
    assert first_error(validator("policy.schema.json"), policy) is None
    signatures = {r["signature"] for r in policy["evidence"]["rules"].values()}
    assert "process:/usr/bin/convert -resize" in signatures
    assert not any("evil" in s or "/bin/sh" in s for s in signatures)

    engine = load_engine(policy, mode="block")
    for i in range(200, 210):
        benign = rec.benign(i)
        verdicts = [(d.verdict, d.rule) for d in _decisions(engine, benign)]
        assert all(v == "allowed" for v, _ in verdicts), verdicts
    verdicts = _decisions(engine, rec.malicious())
    assert verdicts[0].verdict == "blocked"  # the shell
    assert verdicts[2].verdict == "blocked"  # the connection to the new host
