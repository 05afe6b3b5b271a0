"""End-to-end fault tests in the local sandbox: real layer, real runtime, real
extension process, freeze between invokes.

Each test checks the accounting rule: every invocation's record reached a sink
(deduplicated by batch id), or was written by the layer to its fallback output,
or its absence is a counted drop with a reason.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from ext_fakes import read_batches

sandbox_module = pytest.importorskip("palisade_sandbox.sandbox")
Sandbox = sandbox_module.Sandbox

APP = textwrap.dedent(
    """
    import os, signal, time

    def handler(event, context):
        action = event.get("action")
        if action == "sleep":
            time.sleep(event["seconds"])
        elif action == "exit":
            os._exit(3)
        elif action == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "native":
            native(event["port"])
        return {"n": event.get("n")}


    KEEP = []


    def native(port):
        # A child and a connection made through libc, out of the audit hook's view.
        import ctypes, socket, struct
        libc = ctypes.CDLL(None)
        libc.popen.restype = ctypes.c_void_p
        KEEP.append(libc.popen(b"sleep 5", b"r"))
        fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        address = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port)
        address += socket.inet_aton("127.0.0.1") + bytes(8)
        libc.connect(fd, ctypes.c_char_p(address), len(address))
        KEEP.append(fd)
    """
)


class Run:
    """One sandbox with the layer and the extension, and what came out of it."""

    def __init__(self, root: Path, timeout: float = 3.0, **env: str):
        code = root / "code"
        code.mkdir(parents=True)
        (code / "app.py").write_text(APP)
        self.out = root / "batches.jsonl"
        self.fallback = root / "fallback.jsonl"
        base = {
            "PALISADE_SINK": f"file:{self.out}",
            "PALISADE_OUTPUT": f"file:{self.fallback}",
            "PALISADE_OUTSIDE_VIEW": "off",
            "PALISADE_EXTENSION_LOG_LEVEL": "info",
        }
        base.update(env)
        self.logs: list[str] = []
        self.box = Sandbox(
            "app.handler",
            code,
            opt_dir="source",
            env=base,
            timeout=timeout,
            moto=False,
            work_dir=root / "work",
            on_log=lambda name, stream, line: self.logs.append(f"{name}: {line}"),
        )
        self.box.start()
        wrapper = self.box.layout.opt / "palisade-exec-wrapper"
        self.box.set_env({"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)})

    def batches(self) -> list[dict]:
        """Batches from the file sink, each batch id once."""
        seen: dict[str, dict] = {}
        for batch in read_batches(str(self.out)):
            seen.setdefault(batch["batch_id"], batch)
        return list(seen.values())

    def received(self) -> Counter:
        return Counter(r["request_id"] for b in self.batches() for r in b["records"])

    def drops(self) -> Counter:
        total: Counter = Counter()
        for batch in self.batches():
            total.update(batch.get("drops", {}))
        return total

    def fallen_back(self) -> set[str]:
        if not self.fallback.exists():
            return set()
        return {json.loads(line)["request_id"] for line in self.fallback.open()}

    def account(self, request_ids: list[str]) -> list[str]:
        """Assert the accounting rule; return the ids counted as missing."""
        received = self.received()
        copies = Counter(
            (r["request_id"], r.get("started_at"))
            for b in self.batches()
            for r in b["records"]
        )
        duplicates = [key for key, n in copies.items() if n > 1]
        assert duplicates == [], "a record arrived twice under different batch ids"
        missing = [
            rid
            for rid in request_ids
            if rid not in received and rid not in self.fallen_back()
        ]
        drops = self.drops()
        counted = drops["missing-record"] + drops["extension-restart"]
        assert len(missing) <= counted, (missing, drops)
        return missing

    def close(self) -> None:
        self.box.shutdown()


@pytest.fixture
def run(short_dir):
    runs: list[Run] = []

    def make(**kwargs) -> Run:
        made = Run(Path(short_dir) / f"r{len(runs)}", **kwargs)
        runs.append(made)
        return made

    yield make
    for made in runs:
        made.close()


def test_frozen_right_after_each_response_loses_nothing(run):
    """GIVEN the sandbox freezing the environment right after every invoke WHEN
    the function is invoked five times and shut down THEN the INIT record and all
    five records arrive, each once, joined with platform telemetry."""
    r = run()
    ids = [r.box.invoke({"n": i}).request_id for i in range(5)]
    r.close()
    received = r.received()
    assert set(ids) | {"init"} <= set(received)
    assert r.account(ids) == []
    platform = [p for b in r.batches() for p in b.get("platform", [])]
    done = {
        p["record"]["requestId"]
        for p in platform
        if p["type"] == "platform.runtimeDone"
    }
    assert set(ids) <= done


def test_function_timeout_is_a_counted_missing_record(run):
    """GIVEN a handler that outlives its timeout WHEN invoked THEN the layer cannot
    send that record; the extension counts it as missing-record, and the next
    (re-initialised) invocation is delivered."""
    r = run(timeout=1.0)
    slow = r.box.invoke({"action": "sleep", "seconds": 3})
    assert slow.status == "timeout"
    after = r.box.invoke({"n": 1})
    assert after.ok
    r.close()
    assert r.account([slow.request_id, after.request_id]) == [slow.request_id]
    assert after.request_id in r.received()


@pytest.mark.parametrize("action", ["exit", "sigkill"])
def test_runtime_crash_is_a_counted_missing_record(run, action):
    """GIVEN a runtime that dies mid-invocation (os._exit, or an OOM-style SIGKILL)
    THEN its record is a counted drop and the environment recovers."""
    r = run()
    ok = r.box.invoke({"n": 0})
    crashed = r.box.invoke({"action": action})
    assert crashed.status in ("crash", "error")
    again = r.box.invoke({"n": 2})
    assert again.ok
    r.close()
    missing = r.account([ok.request_id, crashed.request_id, again.request_id])
    assert missing == [crashed.request_id]
    assert {ok.request_id, again.request_id} <= set(r.received())


def test_extension_killed_mid_invocation(run):
    """GIVEN the extension SIGKILLed while the handler runs THEN the layer's record
    falls back to its output (or reaches a restarted extension), the environment
    is reset, and later invocations are delivered by the new extension."""
    r = run()
    first = r.box.invoke({"n": 0})
    pid = r.box.extension_pids["palisade"]

    def kill_soon() -> None:
        time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    during = r.box.invoke({"action": "sleep", "seconds": 0.6})
    killer.join()
    later = [r.box.invoke({"n": i}).request_id for i in range(2)]
    r.close()
    assert r.box.extension_pids.get("palisade") != pid
    ids = [first.request_id, during.request_id, *later]
    missing = r.account(ids)
    assert set(missing) <= {during.request_id}
    assert set(later) <= set(r.received())


def test_analyzer_down_then_back_spooled_batches_arrive_once(run, analyzer):
    """GIVEN the analyzer answering 503 for several invocations WHEN it comes back
    THEN the spooled batches are re-sent on the next thaw and every record is
    stored exactly once (the receiver drops re-sends by batch id)."""
    analyzer.status = 503
    r = run(
        PALISADE_SINK="http",
        PALISADE_ANALYZER_URL=analyzer.url,
        PALISADE_ANALYZER_KEY=f"{analyzer.key_id}:{analyzer.secret.decode()}",
    )
    down = [r.box.invoke({"n": i}).request_id for i in range(4)]
    assert analyzer.batches == {}
    analyzer.status = None
    up = [r.box.invoke({"n": i}).request_id for i in range(2)]
    r.close()
    stored = Counter(rec["request_id"] for rec in analyzer.records())
    assert set(down) | set(up) | {"init"} <= set(stored)
    assert max(stored.values()) == 1
    assert analyzer.bad_signatures == 0


def test_analyzer_slow_does_not_hold_the_function(run, analyzer):
    """GIVEN an analyzer that does not answer at all WHEN the function is invoked
    THEN the invocation completes with its result while the analyzer has stored
    nothing; once the analyzer answers, the records arrive."""
    analyzer.gate = threading.Event()
    r = run(
        PALISADE_SINK="http",
        PALISADE_ANALYZER_URL=analyzer.url,
        PALISADE_ANALYZER_KEY=f"{analyzer.key_id}:{analyzer.secret.decode()}",
        PALISADE_SINK_TIMEOUT_MS="20000",
    )
    results = [r.box.invoke({"n": i}) for i in range(2)]
    assert [res.payload for res in results] == [{"n": 0}, {"n": 1}]
    assert analyzer.batches == {}
    assert analyzer.arrived >= 1
    analyzer.gate.set()
    last = r.box.invoke({"n": 2})
    r.close()
    ids = [res.request_id for res in results] + [last.request_id]
    assert set(ids) <= {rec["request_id"] for rec in analyzer.records()}


def test_shutdown_flushes_pending_records(run, analyzer):
    """GIVEN records still spooled because the analyzer refused them WHEN it is
    back and SHUTDOWN comes THEN the extension delivers them within the budget,
    together with the last request's late platform.report."""
    analyzer.status = 503
    r = run(
        PALISADE_SINK="http",
        PALISADE_ANALYZER_URL=analyzer.url,
        PALISADE_ANALYZER_KEY=f"{analyzer.key_id}:{analyzer.secret.decode()}",
    )
    ids = [r.box.invoke({"n": i}).request_id for i in range(3)]
    analyzer.status = None
    r.close()
    assert set(ids) <= {rec["request_id"] for rec in analyzer.records()}
    reports = {
        p["record"].get("requestId")
        for b in analyzer.batches.values()
        for p in b.get("platform", [])
        if p["type"] == "platform.report"
    }
    assert ids[-1] in reports


def test_outside_view_reports_native_child_and_connection(run):
    """GIVEN a handler that starts a child and connects a socket through libc
    (invisible to the audit hook) THEN the outside view reports both, attributed
    to that request."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        r = run(
            timeout=10.0, PALISADE_OUTSIDE_VIEW="on", PALISADE_OUTSIDE_BUDGET_MS="2000"
        )
        r.box.invoke({"n": 0})
        native = r.box.invoke({"action": "native", "port": port})
        assert native.ok, native.error
        r.close()
    finally:
        listener.close()
    outside = [o for b in r.batches() for o in b.get("outside", [])]
    targets = {(o["kind"], o["target"]) for o in outside}
    assert ("network", f"127.0.0.1:{port}") in targets
    children = [o for o in outside if o["kind"] == "process"]
    assert any("sleep" in " ".join(o["detail"]["argv"]) for o in children)
    assert {o["request_id"] for o in outside if o["kind"] != "library"} <= {
        native.request_id,
        None,
    }


@pytest.mark.slow
def test_thousand_invocations_in_one_warm_sandbox(run):
    """GIVEN one warm sandbox WHEN invoked 1,000 times THEN every record arrives
    exactly once and nothing is dropped."""
    r = run()
    ids = [r.box.invoke({"n": i}).request_id for i in range(1000)]
    r.close()
    received = r.received()
    assert set(ids) <= set(received)
    assert r.account(ids) == []
    assert r.drops() == Counter()
