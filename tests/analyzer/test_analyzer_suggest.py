"""Policy proposals: staged modes, the confidence gate, package scoping, evidence,
and globs that the layer's engine matches against raw events."""

from __future__ import annotations

import re
import uuid

import pytest
from analyzer_records import FUNCTION, KEYS_DOC, TEST_SETTINGS, Recorder, send
from palisade.policy import load_engine
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.schemas import first_error, validator
from palisade_analyzer.signing import KeyRing
from palisade_analyzer.suggest import STAGES, argv_regex, suggest_policy


@pytest.fixture
def learned(sqlite_store):
    """A stable thumbnailer profile (20 invocations, two of them read config)."""
    ing = Ingestor(sqlite_store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    rec = Recorder()
    send(ing, rec.batch([rec.benign(i) for i in range(20)]))
    return sqlite_store, rec


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_is_schema_valid(learned, stage):
    """Each stage is a valid policy with the documented modes."""
    store, _ = learned
    doc = suggest_policy(store, FUNCTION, stage=stage)
    assert first_error(validator("policy.schema.json"), doc) is None
    modes = {
        k: doc[k].get("mode") for k in ("file", "process", "code", "env") if k in doc
    }
    expected = {
        "monitor": "monitor",
        "alert-new": "alert",
        "block-high-risk": "alert",
        "full": "block",
    }[stage]
    assert doc["mode"] == expected
    if stage == "block-high-risk":
        assert doc["process"]["mode"] == doc["code"]["mode"] == "block"
        assert modes["file"] is None


def test_gate_scoping_and_evidence(learned):
    """Rules carry packages and evidence; rare behaviour is listed as excluded."""
    store, _ = learned
    doc = suggest_policy(store, FUNCTION, min_invocations=3)
    excluded = {e["signature"]: e["reason"] for e in doc["evidence"]["excluded"]}
    assert excluded == {
        "file:read:/var/task/config.json": "seen in 2 invocation(s), fewer than 3"
    }
    network = doc["network"]["allow"]
    assert {r["host"] for r in network} == {
        "dynamodb.us-east-2.amazonaws.com",
        "*.s3.us-east-2.amazonaws.com",
    }
    assert all(r["packages"] == ["botocore"] and r["ports"] == [443] for r in network)
    convert = doc["process"]["allow"][0]
    assert convert["exec"] == "/usr/bin/convert" and convert["packages"] == ["app"]
    assert "seen 20 time(s) in 20 invocation(s)" in convert["comment"]
    ev = doc["evidence"]["rules"]["process.allow[0]"]
    assert (ev["count"], ev["invocations"]) == (20, 20)
    assert ev["first_seen"] <= ev["last_seen"]
    assert {r["call"] for r in doc["aws"]["allow"]} == {
        "dynamodb:PutItem:thumbnails",
        "s3:GetObject:lambda-artifacts-deafc19498e3f2df/uploads/*",
        "s3:PutObject:lambda-artifacts-deafc19498e3f2df-thumbs/uploads/*",
    }
    lowered = suggest_policy(store, FUNCTION, min_invocations=2)
    assert "file:read:/var/task/config.json" in {
        r["signature"] for r in lowered["evidence"]["rules"].values()
    }


def test_per_process_behaviour_passes_the_gate(sqlite_store):
    """Behaviour seen once per execution environment (at its cold start) passes the
    gate with one environment; the same count in a warm invocation does not."""
    ing = Ingestor(sqlite_store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    rec = Recorder()
    init = rec.record(
        [("file", "read", "/var/task/settings.yaml", {}, "app")],
        request_id="init",
        cold=True,
    )
    init["outcome"] = "init"
    records = [init] + [rec.benign(i + 1) for i in range(20)]
    records[1]["cold_start"] = True
    records[1]["events"].append(
        dict(
            records[1]["events"][0],
            seq=99,
            kind="file",
            op="read",
            target="/tmp/probe-x",
            detail={},
        )
    )
    records[5]["events"].append(
        dict(
            records[5]["events"][0],
            seq=99,
            kind="file",
            op="read",
            target="/srv/once.txt",
            detail={},
        )
    )
    send(ing, rec.batch(records))
    info = sqlite_store.version(FUNCTION, "1")
    assert (info.inits, info.cold_starts, info.sandboxes) == (1, 1, 1)

    doc = suggest_policy(sqlite_store, FUNCTION, min_invocations=3)

    allowed = {r["signature"] for r in doc["evidence"]["rules"].values()}
    excluded = {e["signature"] for e in doc["evidence"]["excluded"]}
    assert {"file:read:/var/task/settings.yaml", "file:read:/tmp/probe-x"} <= allowed
    assert "file:read:/srv/once.txt" in excluded


def test_engine_enforces_the_proposal(learned):
    """Benign variants pass; other flags, packages, hosts or buckets do not."""
    store, rec = learned
    engine = load_engine(suggest_policy(store, FUNCTION), mode="block")

    def verdict(kind, op, target, detail=None, module="app"):
        return engine.decide(kind, op, target, detail or {}, module).verdict

    for i in range(30, 40):
        for ev in rec.benign(i)["events"]:
            assert (
                verdict(ev["kind"], ev["op"], ev["target"], ev["detail"], ev["module"])
                == "allowed"
            ), ev
    argv = ["convert", "/tmp/a.png", "-resize", "5x5", "-write", "/var/task/x", "b"]
    assert verdict("process", "spawn", "/usr/bin/convert", {"argv": argv}) == "blocked"
    ok = ["convert", "/tmp/a.png", "-resize", "5x5", "/tmp/b.png"]
    assert verdict("process", "spawn", "/usr/bin/convert", {"argv": ok}) == "allowed"
    assert (
        verdict("process", "spawn", "/usr/bin/convert", {"argv": ok}, module="requests")
        == "blocked"
    )
    assert (
        verdict(
            "aws",
            "call",
            "s3:GetObject:other-bucket/uploads/x.png",
            {"service": "s3", "operation": "GetObject"},
        )
        == "blocked"
    )
    assert verdict("file", "write", "/var/task/app.py") == "blocked"


def test_block_high_risk_blocks_process_but_alerts_files(learned):
    """The third stage blocks unlisted processes and only alerts other kinds."""
    store, _ = learned
    doc = suggest_policy(store, FUNCTION, stage="block-high-risk")
    engine = load_engine(doc)
    assert (
        engine.decide(
            "process", "spawn", "/usr/bin/wget", {"argv": ["wget", "x"]}, "app"
        ).verdict
        == "blocked"
    )
    assert (
        engine.decide("file", "write", "/srv/new.txt", {}, "app").verdict == "alerted"
    )
    shell = engine.decide(
        "process",
        "spawn",
        "/bin/sh",
        {"argv": ["/bin/sh", "-c", "id"], "shell": True},
        "app",
    )
    assert (shell.verdict, shell.rule) == ("blocked", "builtin:shell-spawn")


@pytest.mark.parametrize(
    ("flags", "shell", "good", "bad"),
    [
        (
            ["-resize"],
            False,
            ["a.png -resize 5x5 b.png", "-resize 1x1"],
            ["a.png -write x", "a.png", "-resize 5 -o x"],
        ),
        ([], False, ["", "file", "a b c"], ["-x", "a -y"]),
        (["--size=*"], False, ["--size=3 f"], ["--size3", "--color=1"]),
        (["-c"], True, ["-c ls -la /", "-c"], ["-x -c ls"]),
    ],
)
def test_argv_regex(flags, shell, good, bad):
    """The argv regex keeps the flag shape and lets values vary."""
    pattern = re.compile(argv_regex(flags, shell))
    for args in good:
        assert pattern.fullmatch(args), args
    for args in bad:
        assert not pattern.fullmatch(args), args


def test_unknown_function_or_version(learned):
    """Asking for a missing profile names what exists."""
    store, _ = learned
    with pytest.raises(LookupError, match="no profile"):
        suggest_policy(store, "ghost")
    with pytest.raises(LookupError, match="known: 1"):
        suggest_policy(store, FUNCTION, version="9")
    with pytest.raises(ValueError, match="not one of"):
        suggest_policy(store, FUNCTION, stage="all")


def test_rename_proposes_rules_for_both_paths(sqlite_store):
    """GIVEN a function that downloads to a temp name and renames it into place
    (what boto3's download_file does) on every invocation
    WHEN a full policy is suggested and enforced by the layer's engine in block mode
    THEN a new invocation's rename is allowed: both its paths are covered."""
    ing = Ingestor(sqlite_store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    rec = Recorder()

    def renaming(i: int) -> dict:
        part = f"/tmp/report-{i}.json.{uuid.uuid4().hex[:8]}"
        final = f"/tmp/report-{i}.json"
        return rec.record(
            [
                ("file", "create", part, {"mode": "wb"}, "s3transfer"),
                ("file", "rename", part, {"dst": final}, "s3transfer"),
            ]
        )

    send(ing, rec.batch([renaming(i) for i in range(20)]))
    doc = suggest_policy(sqlite_store, FUNCTION, stage="full")
    renames = [r for r in doc["file"]["allow"] if r["access"] == ["rename"]]
    assert len(renames) == 2

    engine = load_engine(doc, mode="block", env={})
    part, final = "/tmp/report-77.json.0a1b2c3d", "/tmp/report-77.json"
    decision = engine.decide("file", "rename", part, {"dst": final}, "s3transfer")
    assert decision.verdict == "allowed", decision


def test_paths_under_the_records_roots_are_learned_as_variables(sqlite_store):
    """GIVEN invocations from execution environments whose code and scratch dirs
    differ (TMPDIR and LAMBDA_TASK_ROOT carried in each record's ``paths``)
    WHEN a full policy is suggested
    THEN its file rules name $TASK_ROOT and $TMP, and the layer's engine in a new
    environment with other dirs allows the same behaviour there."""
    ing = Ingestor(sqlite_store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    rec = Recorder()

    def invocation(i: int) -> dict:
        root = f"/tmp/sandbox-{uuid.uuid4().hex[:10]}"
        record = rec.record(
            [
                ("file", "read", f"{root}/task/config.json", {}, "app"),
                ("file", "write", f"{root}/tmp/out.json", {"mode": "w"}, "app"),
            ]
        )
        record["paths"] = {"task_root": f"{root}/task", "tmp": f"{root}/tmp"}
        return record

    send(ing, rec.batch([invocation(i) for i in range(20)]))
    doc = suggest_policy(sqlite_store, FUNCTION, stage="full")
    paths = {r["path"] for r in doc["file"]["allow"]}
    assert paths == {"$TASK_ROOT/config.json", "$TMP/out.json"}

    env = {"LAMBDA_TASK_ROOT": "/elsewhere/task", "TMPDIR": "/elsewhere/tmp"}
    engine = load_engine(doc, mode="block", env=env)
    read = engine.decide("file", "read", "/elsewhere/task/config.json", {}, "app")
    write = engine.decide("file", "write", "/elsewhere/tmp/out.json", {}, "app")
    assert (read.verdict, write.verdict) == ("allowed", "allowed")
