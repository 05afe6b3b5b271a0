"""The extension's lifecycle against a fake Lambda API, through the real launcher."""

from __future__ import annotations

import os
import stat

from ext_fakes import (
    Layer,
    base_env,
    make_record,
    platform,
    read_batches,
    spawn,
    wait_until,
)


def _files_state(env: dict[str, str]) -> dict[str, object]:
    key = env["PALISADE_EXTENSION_KEY"]
    sock = env["PALISADE_EXTENSION_SOCKET"]
    return {
        "key": os.path.exists(key) and stat.S_IMODE(os.stat(key).st_mode),
        "socket": os.path.exists(sock) and stat.S_ISSOCK(os.stat(sock).st_mode),
        "dir": stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode),
    }


def test_prepares_before_register_and_registers_under_launcher_name(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN the launcher under a custom file name WHEN it starts THEN the key (0600),
    the socket and the 0700 directory exist before register, the name registered is
    the file name, and the telemetry subscription asks for platform events at 25 ms."""
    env = base_env(short_dir, fake_lambda.address)
    fake_lambda.on_register = lambda: _files_state(env)
    procs.append(spawn(opt, env, name="palisade-guard"))
    assert fake_lambda.wait_next(1)

    assert fake_lambda.register_snapshot == {"key": 0o600, "socket": True, "dir": 0o700}
    assert fake_lambda.registered[0]["name"] == "palisade-guard"
    assert fake_lambda.registered[0]["body"] == {"events": ["INVOKE", "SHUTDOWN"]}
    sub = fake_lambda.subscriptions[0]
    assert sub["types"] == ["platform"]
    assert sub["buffering"]["timeoutMs"] == 25
    assert sub["destination"]["URI"].startswith("http://127.0.0.1:")
    assert fake_lambda.log[:3] == ["register", "subscribe", "next"]

    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0


def test_next_is_held_until_the_record_arrives_then_batch_is_written(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN an INVOKE WHEN the record has not arrived THEN /next is not called again;
    once the record is acked, /next follows and the batch holds the record joined
    with the request's platform telemetry."""
    env = base_env(short_dir, fake_lambda.address)
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    assert layer.record(make_record("init"))["type"] == "ack"

    fake_lambda.invoke("req-1")
    fake_lambda.telemetry([platform("start", "req-1")])
    assert not fake_lambda.wait_next(2, timeout=0.5)
    assert layer.record(make_record("req-1"))["type"] == "ack"
    fake_lambda.telemetry([platform("runtimeDone", "req-1", status="success")])
    assert fake_lambda.wait_next(2)

    out = short_dir + "/out.jsonl"
    assert wait_until(lambda: read_batches(out))
    batch = read_batches(out)[0]
    assert [r["request_id"] for r in batch["records"]] == ["init", "req-1"]
    assert batch["source"]["function"] == "orders"
    assert batch["source"]["version"] == "7"
    assert any(p["type"] == "platform.start" for p in batch["platform"])
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0
    layer.close()


def _proc_env(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        items = handle.read().split(b"\0")
    return dict(i.decode().split("=", 1) for i in items if b"=" in i)


def test_launcher_sets_pythonpath_for_the_extension_only(
    fake_lambda, opt, short_dir, procs
):
    """The launcher execs the extension with PYTHONPATH = <opt>/palisade:<opt>/python
    (its own process; the environment given to it has none)."""
    env = base_env(short_dir, fake_lambda.address)
    assert "PYTHONPATH" not in env
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    seen = _proc_env(procs[0].pid)
    assert seen["PYTHONPATH"] == f"{opt}/palisade:{opt}/python"
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0


def test_runtime_done_without_record_is_bounded_and_counted(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN a layer that was heard from at INIT WHEN runtimeDone comes without the
    request's record THEN /next follows after the bounded wait and the batch counts
    a missing-record drop."""
    env = base_env(short_dir, fake_lambda.address, PALISADE_RECORD_WAIT_MS="50")
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    assert layer.record(make_record("init"))["type"] == "ack"
    fake_lambda.invoke("req-lost")
    fake_lambda.telemetry([platform("runtimeDone", "req-lost", status="timeout")])
    assert fake_lambda.wait_next(2)
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0
    batches = read_batches(short_dir + "/out.jsonl")
    assert sum(b.get("drops", {}).get("missing-record", 0) for b in batches) == 1


def test_deadline_bounds_the_wait_without_any_signal(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN no record and no runtimeDone WHEN the deadline nears THEN /next is called
    anyway (the invoke is never held past its deadline)."""
    env = base_env(short_dir, fake_lambda.address)
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"]).record(
        make_record("init")
    )
    fake_lambda.invoke("req-slow", timeout_s=0.5)
    assert fake_lambda.wait_next(2, timeout=10)
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0


def test_acked_record_survives_a_killed_extension(fake_lambda, opt, short_dir, procs):
    """GIVEN a record acked by the extension WHEN the extension is SIGKILLed before
    it batched it THEN the next extension process ships it from the spool."""
    env = base_env(short_dir, fake_lambda.address)
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    assert layer.record(make_record("req-acked"))["type"] == "ack"
    procs[0].kill()
    procs[0].wait(timeout=10)
    assert read_batches(short_dir + "/out.jsonl") == []

    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(2)
    fake_lambda.invoke("req-next")
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    assert layer.record(make_record("req-next"))["type"] == "ack"
    assert fake_lambda.wait_next(3)
    fake_lambda.shutdown()
    assert procs[1].wait(timeout=10) == 0
    ids = [
        r["request_id"]
        for b in read_batches(short_dir + "/out.jsonl")
        for r in b["records"]
    ]
    assert sorted(ids) == ["req-acked", "req-next"]


def test_without_a_socket_it_still_registers_and_serves_invokes(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN a socket path that cannot be created WHEN the extension starts THEN it
    still registers, logs the problem once and keeps answering events."""
    blocker = os.path.join(short_dir, "not-a-dir")
    with open(blocker, "w") as handle:
        handle.write("x")
    env = base_env(
        short_dir,
        fake_lambda.address,
        PALISADE_EXTENSION_SOCKET=os.path.join(blocker, "extension.sock"),
    )
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    fake_lambda.invoke("r1", timeout_s=1)
    fake_lambda.telemetry([platform("runtimeDone", "r1", status="success")])
    assert fake_lambda.wait_next(2)
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0
    stderr = procs[0].stderr.read().decode()
    assert stderr.count("cannot serve the layer's socket") == 1


def test_broken_extensions_api_reports_exit_error(fake_lambda, opt, short_dir, procs):
    """GIVEN /next failing repeatedly THEN the extension posts /extension/exit/error
    and exits non-zero."""
    env = base_env(short_dir, fake_lambda.address)
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    for _ in range(3):
        fake_lambda.events.put(None)
    assert procs[0].wait(timeout=20) == 1
    assert fake_lambda.errors[0]["path"].endswith("/extension/exit/error")


def test_full_spool_drops_oldest_and_reports_the_count(
    fake_lambda, opt, short_dir, procs, analyzer
):
    """GIVEN the analyzer down and a spool that holds only a few batches WHEN many
    invocations pass THEN, once the analyzer is back, every record is either
    stored or counted as spool-full in a later batch's drops."""
    analyzer.status = 503
    env = base_env(
        short_dir,
        fake_lambda.address,
        PALISADE_SINK="http",
        PALISADE_ANALYZER_URL=analyzer.url,
        PALISADE_ANALYZER_KEY="k1:s3cret",
        PALISADE_SPOOL_MAX_BYTES="12000",
        PALISADE_SHIP_WAIT_MS="200",
    )
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    ids = [f"req-{i}" for i in range(12)]
    for n, request_id in enumerate(ids, start=2):
        fake_lambda.invoke(request_id)
        record = make_record(request_id, event_digest=["x" * 190] * 10)
        assert layer.record(record)["type"] == "ack"
        assert fake_lambda.wait_next(n)
    analyzer.status = None
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0

    stored = {r["request_id"] for r in analyzer.records()}
    spool_full = sum(
        b.get("drops", {}).get("spool-full", 0) for b in analyzer.batches.values()
    )
    assert spool_full > 0
    assert len(stored & set(ids)) + spool_full == len(ids)
    assert ids[-1] in stored


def test_otlp_sink_follows_the_standard_environment(fake_lambda, opt, short_dir, procs):
    """PALISADE_SINK=otlp exports each invocation as a span to the endpoint named
    by OTEL_EXPORTER_OTLP_ENDPOINT."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        env = base_env(
            short_dir,
            fake_lambda.address,
            PALISADE_SINK="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
        )
        procs.append(spawn(opt, env))
        assert fake_lambda.wait_next(1)
        layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
        fake_lambda.invoke("req-otlp")
        assert layer.record(make_record("req-otlp"))["type"] == "ack"
        assert fake_lambda.wait_next(2)
        fake_lambda.shutdown()
        assert procs[0].wait(timeout=10) == 0
    finally:
        collector.shutdown()
        collector.server_close()
    spans = [
        span
        for doc in received
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    assert [s["name"] for s in spans] == ["invoke orders"]
    attributes = {a["key"]: a["value"] for a in spans[0]["attributes"]}
    assert attributes["palisade.request_id"] == {"stringValue": "req-otlp"}
