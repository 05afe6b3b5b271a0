"""Records match record.schema.json, and their fields mean what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layer_harness import LAYER, run_handler

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

SCHEMAS = LAYER / "palisade" / "schemas"


def _validator() -> object:
    record = json.loads((SCHEMAS / "record.schema.json").read_text())
    policy = json.loads((SCHEMAS / "policy.schema.json").read_text())
    registry = referencing.Registry().with_resources(
        [
            (record["$id"], referencing.Resource.from_contents(record)),
            (policy["$id"], referencing.Resource.from_contents(policy)),
            ("policy.schema.json", referencing.Resource.from_contents(policy)),
        ]
    )
    return jsonschema.Draft202012Validator(record, registry=registry)


def test_records_validate(tmp_path: Path) -> None:
    """INIT and invocation records of a busy handler validate against the schema;
    duration, outcome, digest and python are filled in."""
    body = """
    import ctypes
    subprocess.run(['true'])
    os.listdir('/etc')
    open('/proc/self/environ', 'rb').read()
    socket.getaddrinfo('localhost', 80)
    exec('x = 1')
    raise KeyError('boom')
    """
    event = {"Records": [{"body": "customer-4711", "n": 3}], "short": "ab"}
    run = run_handler(tmp_path, body, event=event, PALISADE_MODE="alert")
    validator = _validator()
    assert len(run.records) == 2, run.describe()
    for record in run.records:
        errors = sorted(validator.iter_errors(record), key=str)
        assert not errors, [e.message for e in errors]
    [record] = run.invocations
    assert record["outcome"] == "error" and record["error_type"] == "KeyError"
    # Values of 4..200 characters only: keys, numbers and "ab" are not kept.
    assert record["event_digest"] == ["customer-4711"]
    assert record["duration_ms"] >= 0 and record["python"].count(".") == 2
    assert record["mode"] == "alert" and record["layer_version"]
    seqs = [e["seq"] for r in run.records for e in r["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_connect_by_hostname(tmp_path: Path) -> None:
    """A connect given a host name (resolved inside connect, no lookup event) is
    decided on the name."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    body = f"""
    s = socket.socket(); s.connect(('LocalHost', {port})); s.close()
    """
    try:
        run = run_handler(tmp_path, body)
    finally:
        server.close()
    event = run.one("network", "connect")
    assert (
        event["target"] == f"localhost:{port}"
        and event["detail"]["host"] == "localhost"
    )
