"""The HTTP service: ingest over real sockets, the GET endpoints, size limits
before reading, and a clean stop of ``palisade analyzer serve`` on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from analyzer_records import FUNCTION, KEYS_DOC, TEST_SETTINGS, Recorder, encode, sign
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.server import AnalyzerServer
from palisade_analyzer.signing import KeyRing


def _call(url, method="GET", body=None, headers=None):
    request = urllib.request.Request(
        url, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def server(sqlite_store):
    """An analyzer on a free loopback port; stopped afterwards."""
    settings = TEST_SETTINGS.replace(max_batch_bytes=200_000)
    ing = Ingestor(sqlite_store, KeyRing.from_document(KEYS_DOC), settings)
    srv = AnalyzerServer(ing, sqlite_store, settings, "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()


def _post(url, doc):
    body = encode(doc)
    return _call(
        f"{url}/v1/batches",
        "POST",
        body,
        {"content-type": "application/json", **sign(body)},
    )


def test_ingest_and_query_over_http(server):
    """Batches go in over HTTP; every GET endpoint answers JSON about them."""
    url = server.url
    rec = Recorder()
    status, answer = _post(url, rec.batch([rec.benign(i) for i in range(20)]))
    assert (status, answer["stored"]) == (202, 20)
    attack = rec.malicious()
    doc = rec.batch([attack])
    status, answer = _post(url, doc)
    assert status == 202 and len(answer["alerts"]) == 2
    assert _post(url, doc)[0] == 200

    assert _call(f"{url}/v1/health") == (200, {"status": "ok"})
    status, stats = _call(f"{url}/v1/stats")
    assert stats["stats"]["batches.stored"] == 2
    assert stats["stats"]["batches.duplicate"] == 1
    status, funcs = _call(f"{url}/v1/functions")
    assert funcs["functions"][0]["function"] == FUNCTION
    assert funcs["functions"][0]["versions"][0]["state"] == "stable"
    status, profile = _call(f"{url}/v1/functions/{FUNCTION}/profile?version=1")
    assert status == 200 and profile["invocations"] == 21
    assert "process:/usr/bin/convert -resize" in {
        s["signature"] for s in profile["signatures"]
    }
    status, alerts = _call(f"{url}/v1/alerts?function={FUNCTION}&since=0")
    assert {a["signature"] for a in alerts["alerts"]} == {
        "process:/bin/sh -c",
        "network:evil.example.net:80",
    }
    status, ocsf = _call(f"{url}/v1/alerts?format=ocsf")
    assert {a["class_uid"] for a in ocsf["alerts"]} == {2004}
    status, trail = _call(
        f"{url}/v1/functions/{FUNCTION}/trail?request_id={attack['request_id']}"
    )
    assert [e["kind"] for e in trail["invocations"][0]["timeline"]] == [
        "process",
        "dns",
        "network",
    ]
    status, policy = _call(
        f"{url}/v1/functions/{FUNCTION}/policy?stage=block-high-risk"
    )
    assert status == 200 and policy["mode"] == "alert"
    assert policy["process"]["mode"] == "block"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/nothing", 404, "not_found"),
        ("/elsewhere", 404, "not_found"),
        ("/v1/functions/ghost/profile", 404, "unknown_function"),
        ("/v1/functions/ghost/policy", 404, "unknown_function"),
        ("/v1/alerts?since=last-tuesday", 400, "bad_since"),
        ("/v1/alerts?format=xml", 400, "bad_format"),
        (f"/v1/functions/{FUNCTION}/policy?stage=yolo", 400, "bad_stage"),
    ],
)
def test_get_errors(server, path, status, code):
    """Unknown paths and bad query values get a precise status and code."""
    got_status, doc = _call(server.url + path)
    assert (got_status, doc["error"]) == (status, code)
    assert doc["message"]


@pytest.mark.parametrize("limit", ["100000", "1001", "0", "-5", "ten"])
def test_trail_limit_is_capped(server, limit):
    """A trail limit outside 1..1000 is a 400 naming the maximum; 1000 is served."""
    url = f"{server.url}/v1/functions/{FUNCTION}/trail"
    status, doc = _call(f"{url}?limit={limit}")
    assert (status, doc["error"]) == (400, "bad_limit")
    assert "from 1 to 1000" in doc["message"]
    assert _call(f"{url}?limit=1000")[0] == 200


def test_oversized_body_is_refused_before_reading(server, sqlite_store):
    """A Content-Length over the limit answers 413 at once and is counted."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.putrequest("POST", "/v1/batches")
    conn.putheader("content-length", str(10_000_000))
    conn.endheaders()
    response = conn.getresponse()
    doc = json.loads(response.read())
    conn.close()
    assert (response.status, doc["error"]) == (413, "batch_too_large")
    assert sqlite_store.stats()["rejected.batch_too_large"] == 1
    assert sqlite_store.functions() == []


def test_other_methods_are_refused(server):
    """PUT and DELETE answer 405 in JSON."""
    for method in ("PUT", "DELETE"):
        status, doc = _call(f"{server.url}/v1/batches", method, b"{}")
        assert (status, doc["error"]) == (405, "method_not_allowed")


def test_post_elsewhere_and_bad_signature_over_http(server):
    """POST to another path is 404; a bad signature is 401 with its message."""
    assert _call(f"{server.url}/v1/other", "POST", b"{}")[0] == 404
    rec = Recorder()
    body = encode(rec.batch([rec.benign(1)]))
    headers = sign(body)
    headers["X-Palisade-Signature"] = "v1=" + "0" * 64
    status, doc = _call(f"{server.url}/v1/batches", "POST", body, headers)
    assert (status, doc["error"]) == (401, "bad_signature")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        (
            b'{"schema": "palisade.batch/1", "batch_id": "\\udc00-abcdefgh"}',
            "invalid_unicode",
        ),
        (b'{"batch_id": "\xff\xfe"}', "malformed_json"),
    ],
    ids=["deep", "surrogate", "not_utf8"],
)
def test_hostile_bodies_over_http(server, sqlite_store, body, code):
    """Hostile signed bodies are 400s over HTTP too, counted, never a 500."""
    status, doc = _call(f"{server.url}/v1/batches", "POST", body, sign(body))
    assert (status, doc["error"]) == (400, code), doc
    assert sqlite_store.stats()[f"rejected.{code}"] == 1
    assert "rejected.internal_error" not in sqlite_store.stats()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_and_stops_cleanly(tmp_path, signum):
    """`palisade analyzer serve` prints its URL, ingests, and exits 0 on a signal."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS_DOC))
    db = tmp_path / "served.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "palisade_cli.main",
            "analyzer",
            "serve",
            "--db",
            str(db),
            "--port",
            "0",
            "--keys",
            str(keys),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("palisade analyzer listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[-1].strip()
        rec = Recorder()
        assert _post(url, rec.batch([rec.benign(1)]))[0] == 202
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert db.exists()
