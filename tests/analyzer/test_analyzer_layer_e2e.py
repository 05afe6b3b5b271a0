"""With the real layer: records made by `palisade invoke` (the local sandbox, the
layer and the extension) feed the analyzer; the policy it suggests, enforced by
the layer in block mode, blocks none of the function's benign events; a new
execution environment raises nothing, and an injected shell raises one alert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from analyzer_records import sample_event
from palisade_analyzer.sqlite_store import SQLiteStore
from palisade_analyzer.suggest import suggest_policy

HANDLER = textwrap.dedent("""
    import json, os, subprocess, tempfile

    def handler(event, context):
        key = event["Records"][0]["s3"]["object"]["key"]
        if ";" in key:  # the bug: the key reaches a shell
            subprocess.run("echo " + key, shell=True, capture_output=True)
        with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as f:
            f.write(key.encode())
        out = subprocess.run(["/bin/echo", "-n", f.name], capture_output=True).stdout
        with open(os.path.join(os.path.dirname(__file__), "config.json")) as c:
            json.load(c)
        os.unlink(f.name)
        return {"len": len(out)}
""")


def _invoke(code_dir, events, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_")}
    # The sandbox's local analyzer learns from these few invocations.
    env["PALISADE_ANALYZER_LEARN_MIN_INVOCATIONS"] = "5"
    env["PALISADE_ANALYZER_LEARN_QUIET_SECONDS"] = "0"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "palisade_cli.main",
            "invoke",
            "app.handler",
            "--code-dir",
            str(code_dir),
            "--events",
            str(events),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]


@pytest.mark.slow
def test_suggested_policy_passes_the_real_layers_benign_events(tmp_path):
    """Learn from real records, suggest, enforce in block mode: nothing blocked."""
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    (code / "config.json").write_text('{"size": 128}')
    events = tmp_path / "events.jsonl"
    lines = []
    for _ in range(8):
        event = sample_event("s3Event.json")
        event["Records"][0]["s3"]["object"]["key"] = f"uploads/{uuid.uuid4()}.png"
        lines.append(json.dumps(event))
    events.write_text("\n".join(lines) + "\n")
    db = tmp_path / "analyzer.db"

    learned = _invoke(code, events, "--db", str(db))
    assert len(learned) == 9  # INIT and eight invocations

    store = SQLiteStore(str(db))
    try:
        (function,) = store.functions()
        info = store.version(function, learned[1]["version"])
        # The sandbox ships within a bounded wait: on a loaded machine the last
        # batch may stay spooled, so at least six of the eight must have arrived.
        assert info.invocations >= 6 and info.state == "stable", info
        assert store.alerts() == []
        policy = suggest_policy(store, function, min_invocations=3)
    finally:
        store.close()
    assert policy["process"]["allow"][0]["exec"] == "/bin/echo"
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))

    enforced = _invoke(code, events, "--policy", str(path), "--mode", "block")

    verdicts = [
        (e["verdict"], e["kind"], e["target"]) for r in enforced for e in r["events"]
    ]
    assert verdicts and all(v == "allowed" for v, _, _ in verdicts), verdicts
    assert all(r["outcome"] in ("success", "init") for r in enforced)

    # A new execution environment, benign again, then the injected key.
    attack = sample_event("s3Event.json")
    attack["Records"][0]["s3"]["object"]["key"] = "uploads/x.png;id"
    mixed = tmp_path / "attack.jsonl"
    mixed.write_text(lines[0] + "\n" + json.dumps(attack) + "\n")
    for _ in range(3):  # on a loaded machine a run's last batch may not arrive
        _invoke(code, mixed, "--db", str(db))
        store = SQLiteStore(str(db))
        try:
            alerts = store.alerts()
        finally:
            store.close()
        if alerts:
            break
    assert [(a.signature, a.severity) for a in alerts] == [
        ("process:/bin/sh -c", "critical")
    ]
    assert "event data in arguments" in alerts[0].reasons
    assert "new behaviour of class shell" in alerts[0].reasons
