"""The outside view: what /proc shows of the runtime that the records do not."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
from ext_fakes import make_event, make_record
from palisade_extension.outside import OutsideView, find_runtime, sockets_of

RUNTIME = textwrap.dedent(
    """
    import ctypes, socket, subprocess, sys, time
    child = subprocess.Popen(["sleep", "30"])
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    ctypes.CDLL(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.read()
    child.kill()
    """
)


@pytest.fixture
def runtime(short_dir):
    """A stand-in runtime: a child process, a TCP connection, a private .so."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    libm = ctypes.util.find_library("m")
    source = next(
        p
        for p in (
            f"/lib/x86_64-linux-gnu/{libm}",
            f"/usr/lib/x86_64-linux-gnu/{libm}",
            f"/lib64/{libm}",
            f"/usr/lib/{libm}",
            f"/lib/aarch64-linux-gnu/{libm}",
        )
        if libm and os.path.exists(p)
    )
    private = os.path.join(short_dir, "libnative.so")
    shutil.copy(source, private)
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API="127.0.0.1:1", _HANDLER="app.handler")
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNTIME, str(port), private],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    accepted, _ = listener.accept()
    assert proc.stdout.readline().strip() == b"ready"
    yield {"pid": proc.pid, "port": port, "library": private}
    proc.stdin.close()
    proc.wait(timeout=10)
    accepted.close()
    listener.close()


def test_unexplained_child_socket_and_library_are_reported(runtime):
    """GIVEN a runtime with a child, a connection and a private library that no
    record mentions WHEN sampled THEN each is reported once, with the request id."""
    view = OutsideView(runtime["pid"], budget_s=2.0, max_entries=64)
    findings = view.sample([make_record("r1")], "r1")
    by_kind = {(f["kind"], f["target"]) for f in findings}
    assert ("network", f"127.0.0.1:{runtime['port']}") in by_kind
    assert ("library", runtime["library"]) in by_kind
    children = [f for f in findings if f["kind"] == "process"]
    assert children and children[0]["detail"]["argv"][0] == "sleep"
    assert all(f["request_id"] == "r1" for f in findings)
    assert view.sample([], "r2") == []


def test_explained_findings_are_not_reported(runtime):
    """Events for the spawn, the connect and the dlopen explain what /proc shows."""
    events = [
        make_event("process", "spawn", "/usr/bin/sleep", "r1", argv=["sleep", "30"]),
        make_event(
            "network",
            "connect",
            f"127.0.0.1:{runtime['port']}",
            "r1",
            ip="127.0.0.1",
            port=runtime["port"],
            protocol="tcp",
        ),
        make_event("code", "dlopen", runtime["library"], "r1"),
    ]
    view = OutsideView(runtime["pid"], budget_s=2.0, max_entries=64)
    assert view.sample([make_record("r1", events=events)], "r1") == []


def test_entries_are_capped(runtime):
    """A sample reports at most max_entries findings."""
    view = OutsideView(runtime["pid"], budget_s=2.0, max_entries=1)
    assert len(view.sample([], "r1")) == 1
    assert view.truncated >= 1


def test_runtime_found_by_environment(runtime, monkeypatch):
    """Without a pid, the runtime is the process sharing our AWS_LAMBDA_RUNTIME_API
    value that has _HANDLER, not its child."""
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:1")
    assert find_runtime() == runtime["pid"]
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:2")
    assert find_runtime() is None


def test_sockets_are_joined_with_proc_net(runtime):
    """A connected socket's inode maps to its remote address from /proc/net/tcp."""
    remotes = {entry["remote"] for entry in sockets_of(runtime["pid"]).values()}
    assert ("127.0.0.1", runtime["port"]) in remotes


def test_no_runtime_means_no_findings():
    """A pid that does not exist and no discoverable runtime: an empty sample."""
    view = OutsideView(2**22 + 12345, budget_s=0.5, max_entries=8)
    os.environ.pop("AWS_LAMBDA_RUNTIME_API", None)
    assert view.sample([], "r") == []
