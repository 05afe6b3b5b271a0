"""Learning states, code versions, decay, rarity, rates and injection scoring.

Runs on both backends: the state machine lives in the store's set-once fields.
"""

from __future__ import annotations

import pytest
from analyzer_records import FUNCTION, KEYS_DOC, TEST_SETTINGS, Recorder, send
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.signing import KeyRing
from palisade_analyzer.suggest import suggest_policy


def _ingestor(store, **changes):
    return Ingestor(
        store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS.replace(**changes)
    )


def _learn(ing, rec, n=20):
    """One batch of n benign invocations: enough to learn with quiet 0."""
    result = send(ing, rec.batch([rec.benign(i) for i in range(n)]))
    assert result.status == 202 and result.new_alerts == []
    return result


def _with(record, *events):
    """A benign record with extra (kind, op, target, detail, module, ...) events."""
    rid = record["request_id"]
    extra = Recorder()
    extra.clock = record["events"][-1]["ts"]
    for spec in events:
        ev = extra._event(rid, len(record["events"]), *spec)
        record["events"].append(ev)
    return record


def test_learning_becomes_stable_after_invocations_and_quiet(store):
    """Stable needs N invocations AND quiet time since the last new signature."""
    ing = _ingestor(store, learn_min_invocations=5, learn_quiet_seconds=600)
    rec = Recorder()
    states = []
    for i in range(1, 20):
        record = rec.benign(1)
        if i == 8:
            _with(record, ("file", "read", "/etc/ssl/certs/ca.pem", {}, "certifi"))
        send(ing, rec.batch([record]))
        states.append(store.version(FUNCTION, "1").state)
    # A new signature at invocation 8 restarts the 600 s (10 invocations) quiet.
    assert states[:17] == ["learning"] * 17
    assert states[17:] == ["stable", "stable"]


def test_only_builtin_classes_alert_while_learning(store):
    """While learning, new behaviour is learned silently, but built-in high-risk
    decisions alert at once."""
    ing = _ingestor(store, learn_min_invocations=1000)
    rec = Recorder()
    quiet = _with(
        rec.benign(1),
        (
            "process",
            "spawn",
            "/bin/sh",
            {"argv": ["sh", "-c", "ls"], "shell": True},
            "app",
        ),
    )
    loud = _with(
        rec.benign(2),
        (
            "network",
            "connect",
            "169.254.169.254:80",
            {"ip": "169.254.169.254", "port": 80},
            "app",
            "blocked",
            "builtin:metadata-address",
        ),
    )

    assert send(ing, rec.batch([quiet])).new_alerts == []
    alerts = send(ing, rec.batch([loud])).new_alerts

    assert [(a.signature, a.severity, a.state) for a in alerts] == [
        ("network:169.254.169.254:80", "high", "learning")
    ]
    assert "built-in rule metadata-address (blocked)" in alerts[0].reasons


def test_new_version_relearns_with_the_previous_profile_as_prior(store):
    """Version 2 starts relearning from version 1: known behaviour is quiet at once,
    new high-risk behaviour alerts, low-risk is learned; then it becomes stable."""
    ing = _ingestor(store, relearn_min_invocations=5)
    v1 = Recorder(version="1")
    _learn(ing, v1)
    v2 = Recorder(version="2")
    v2.clock = v1.clock

    same = send(ing, v2.batch([v2.benign(1)]))
    assert same.new_alerts == []
    info = store.version(FUNCTION, "2")
    assert (info.state, info.prior) == ("relearning", "1")

    new = _with(
        v2.benign(2),
        ("process", "spawn", "/usr/bin/curl", {"argv": ["curl", "-s", "x"]}, "app"),
        ("file", "read", "/etc/hosts", {}, "app"),
    )
    alerts = send(ing, v2.batch([new])).new_alerts
    assert [(a.signature, a.severity, a.state) for a in alerts] == [
        ("process:/usr/bin/curl -s", "medium", "relearning")
    ]

    send(ing, v2.batch([v2.benign(i) for i in range(3, 6)]))
    assert store.version(FUNCTION, "2").state == "stable"
    assert store.version(FUNCTION, "1").state == "stable"


def test_behaviour_unseen_for_the_decay_period_alerts_again(store):
    """A learned behaviour unseen for longer than decay_seconds is new again and
    is left out of suggested policies."""
    ing = _ingestor(store, decay_seconds=3000)
    rec = Recorder()
    gzip = ("process", "spawn", "/usr/bin/gzip", {"argv": ["gzip", "-k", "f"]}, "app")
    send(ing, rec.batch([_with(rec.benign(i), gzip) for i in range(20)]))
    assert store.version(FUNCTION, "1").state == "stable"
    send(ing, rec.batch([rec.benign(i) for i in range(60)]))  # an hour without gzip

    policy = suggest_policy(store, FUNCTION, min_invocations=1, settings=ing.settings)
    excluded = {e["signature"]: e["reason"] for e in policy["evidence"]["excluded"]}
    assert excluded["process:/usr/bin/gzip -k"].startswith("decayed")

    alerts = send(ing, rec.batch([_with(rec.benign(99), gzip)])).new_alerts
    assert [(a.signature, a.newness) for a in alerts] == [
        ("process:/usr/bin/gzip -k", "decayed")
    ]


def test_rare_learned_behaviour_alerts_low_only_for_critical_classes(store):
    """Seen once while learning: a shell again is a low alert; a rare import is not."""
    ing = _ingestor(store)
    rec = Recorder()
    shell = ("process", "spawn", "/bin/sh", {"argv": ["sh", "-c", "date"]}, "app")
    rare_import = ("code", "import", "csv", {}, "app")
    records = [rec.benign(i) for i in range(20)]
    _with(records[3], shell, rare_import)
    send(ing, rec.batch(records))

    alerts = send(
        ing, rec.batch([_with(rec.benign(50), shell, rare_import)])
    ).new_alerts

    assert [(a.signature, a.severity, a.newness) for a in alerts] == [
        ("process:/bin/sh -c", "low", "rare")
    ]


def test_rate_jump_alerts(store):
    """Forty connections where two are usual raise rate:connections, nothing else."""
    ing = _ingestor(store)
    rec = Recorder()
    _learn(ing, rec, 30)
    burst = rec.benign(1)
    connect = next(e for e in burst["events"] if e["kind"] == "network")
    _with(
        burst,
        *[
            (
                "network",
                "connect",
                connect["target"],
                dict(connect["detail"]),
                "botocore",
                "allowed",
                "aws-endpoint",
            )
        ]
        * 40,
    )

    alerts = send(ing, rec.batch([burst])).new_alerts

    assert [(a.signature, a.severity) for a in alerts] == [
        ("rate:connections", "medium")
    ]
    assert "connections per invocation 42" in alerts[0].reasons[0]


@pytest.mark.parametrize(("injected", "severity"), [(False, "medium"), (True, "high")])
def test_event_data_in_arguments_raises_severity(store, injected, severity):
    """A new process is medium; with the invocation's own event text in its
    arguments (event-data injection) it is one step higher."""
    ing = _ingestor(store)
    rec = Recorder()
    _learn(ing, rec)
    record = rec.benign(1)
    key = record["event_digest"][-1] if injected else "local-file.zip"
    _with(
        record, ("process", "spawn", "/usr/bin/unzip", {"argv": ["unzip", key]}, "app")
    )

    alerts = send(ing, rec.batch([record])).new_alerts

    assert [(a.signature, a.severity) for a in alerts] == [
        ("process:/usr/bin/unzip", severity)
    ]
    assert ("event data in arguments" in alerts[0].reasons) is injected


def test_outside_view_findings_and_drops(store):
    """The extension's /proc findings: an unreported process alerts at once; an
    unreported library is learned like any behaviour; drops are counted."""
    ing = _ingestor(store)
    rec = Recorder()

    def outside(kind, target):
        return {
            "kind": kind,
            "target": target,
            "detail": {"pid": 42},
            "observed_at": rec.clock,
            "request_id": None,
        }

    learning = rec.batch([rec.benign(i) for i in range(20)])
    learning["outside"] = [outside("library", "/var/task/lib/libvips.so.42")]
    learning["drops"] = {"buffer-full": 3}
    assert send(ing, learning).new_alerts == []
    assert store.version(FUNCTION, "1").state == "stable"

    later = rec.batch([rec.benign(50)])
    later["outside"] = [
        outside("library", "/var/task/lib/libvips.so.42"),
        outside("library", "/tmp/x.so"),
        outside("process", "/usr/bin/nc"),
    ]
    alerts = send(ing, later).new_alerts

    assert sorted((a.signature, a.severity) for a in alerts) == [
        ("outside:library:/tmp/x.so", "medium"),
        ("outside:process:/usr/bin/nc", "high"),
    ]
    assert store.stats()["drops.buffer-full"] == 3
