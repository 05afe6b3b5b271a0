"""The acceptance scenario: a shell, an environ read and a loopback connect, in
one record; built-in rules alert in monitor mode and block in block mode."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from layer_harness import run_script

SCRIPT = """
import json, socket, subprocess, sys
from palisade import protect

PORT = int(sys.argv[1])

def handler(event, context):
    outcome = {}
    try:
        subprocess.run(["sh", "-c", "ls /tmp"], check=True, capture_output=True)
        outcome["shell"] = "ran"
    except PermissionError:
        outcome["shell"] = "PermissionError"
    try:
        open("/proc/self/environ", "rb").read()
        outcome["environ"] = "read"
    except PermissionError:
        outcome["environ"] = "PermissionError"
    with socket.create_connection(("127.0.0.1", PORT)) as conn:
        conn.sendall(b"hi")
    outcome["connect"] = "ok"
    return outcome

print("OUT " + json.dumps(protect(handler)({"k": "v"}, None)))
"""


@pytest.mark.parametrize("mode", ["monitor", "block"])
def test_acceptance(tmp_path: Path, mode: str) -> None:
    """GIVEN a handler that runs `sh -c "ls /tmp"`, reads /proc/self/environ and
    connects to a loopback port, wrapped with protect and PALISADE_OUTPUT=file:...
    WHEN it runs THEN one record lists all three; in monitor mode the shell and the
    environ read are alerted by built-in rules and everything ran; in block mode
    with a policy allowing only that port both raise PermissionError and the
    connect succeeds."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    port = server.getsockname()[1]
    settings = {"PALISADE_MODE": mode}
    if mode == "block":
        settings["PALISADE_POLICY"] = json.dumps(
            {
                "version": 1,
                "network": {"allow": [{"host": "127.0.0.1", "ports": [port]}]},
            }
        )
    try:
        run = run_script(tmp_path, SCRIPT, args=[str(port)], **settings)
        conn, _ = server.accept()
        with conn:
            assert conn.recv(10) == b"hi"
    finally:
        server.close()

    out = json.loads(run.stdout.partition("OUT ")[2])
    [record] = run.invocations
    by_kind = {(e["kind"], e["op"]): e for e in record["events"]}
    shell = by_kind[("process", "spawn")]
    environ = by_kind[("env", "read")]
    connect = by_kind[("network", "connect")]
    assert shell["detail"]["shell"] is True and shell["rule"] == "builtin:shell-spawn"
    assert environ["target"] == "/proc/self/environ"
    assert environ["rule"] == "builtin:proc-environ-read"
    assert connect["target"] == f"127.0.0.1:{port}"
    if mode == "monitor":
        assert out == {"shell": "ran", "environ": "read", "connect": "ok"}
        assert shell["verdict"] == environ["verdict"] == "alerted"
        assert connect["verdict"] == "allowed"
        assert record["outcome"] == "success"
    else:
        assert out == {
            "shell": "PermissionError",
            "environ": "PermissionError",
            "connect": "ok",
        }
        assert shell["verdict"] == environ["verdict"] == "blocked"
        assert connect["verdict"] == "allowed" and connect["rule"].startswith(
            "policy:network.allow"
        )
        assert len(run.blocked_lines) == 2
    assert record["mode"] == mode
