"""The extension socket: framed, HMAC-signed records and policy requests, the
key file read once and deleted, and the fallback to PALISADE_OUTPUT."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from layer_harness import child_env, run_script


class FakeExtension:
    """The extension's side of the contract, enough to test the layer against."""

    def __init__(self, folder: Path, policy: dict[str, Any] | None = None) -> None:
        self.key = os.urandom(32)
        self.key_path = folder / "extension.key"
        self.key_path.write_text(self.key.hex())
        self.key_path.chmod(0o600)
        self.sock_path = folder / "extension.sock"
        self.policy = policy
        self.messages: list[dict[str, Any]] = []
        self.bad_frames = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.sock_path))
        self.server.listen(4)
        self.server.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            self._connection(conn)

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        last = 0
        while True:
            header = conn.recv(4)
            if len(header) < 4:
                return
            (size,) = struct.unpack(">I", header)
            payload = b""
            while len(payload) < size:
                chunk = conn.recv(size - len(payload))
                if not chunk:
                    return
                payload += chunk
            mac, body = payload[:32], payload[32:]
            message = json.loads(body)
            if (
                not hmac.compare_digest(
                    mac, hmac.new(self.key, body, hashlib.sha256).digest()
                )
                or message["seq"] <= last
            ):
                self.bad_frames += 1
                error = json.dumps({"type": "error", "reason": "bad mac"}).encode()
                conn.sendall(struct.pack(">I", len(error)) + error)
                return
            last = message["seq"]
            self.messages.append(message)
            if message["type"] == "policy":
                reply = {
                    "type": "policy",
                    "seq": last,
                    "policy": self.policy,
                    "source": "test",
                }
            else:
                reply = {"type": "ack", "seq": last}
            body = json.dumps(reply).encode()
            frame = hmac.new(self.key, body, hashlib.sha256).digest() + body
            conn.sendall(struct.pack(">I", len(frame)) + frame)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def extension(tmp_path: Path) -> Iterator[FakeExtension]:
    """A fake extension listening in a short folder (Unix socket paths are short)."""
    fake = FakeExtension(tmp_path)
    yield fake
    fake.close()


SCRIPT = """
import os, socket, palisade
palisade.install()
print("KEY", os.path.exists(os.environ["PALISADE_EXTENSION_KEY"]))
h = palisade.protect(lambda e, c: os.listdir('/etc') and 'done')
print("OUT", h({"order": "order-12345"}, None), h({}, None))
"""


def test_records_go_to_the_extension(tmp_path: Path, extension: FakeExtension) -> None:
    """INIT and each invocation record arrive signed with increasing seq; the key
    file is gone after install; the socket itself produces no event; nothing falls
    back to the output."""
    env = child_env(
        tmp_path,
        PALISADE_EXTENSION_SOCKET=str(extension.sock_path),
        PALISADE_EXTENSION_KEY=str(extension.key_path),
    )
    run = run_script(tmp_path, SCRIPT, env=env)
    assert "KEY False" in run.stdout and "OUT done done" in run.stdout, run.describe()
    assert not extension.key_path.exists()
    records = [m["record"] for m in extension.messages if m["type"] == "record"]
    assert next(r["request_id"] for r in records) == "init" and len(records) == 3
    assert [m["seq"] for m in extension.messages] == [1, 2, 3]
    assert extension.bad_frames == 0
    assert run.records == []
    for record in records:
        assert all(e["kind"] != "network" for e in record["events"])
    assert "order-12345" in records[1]["event_digest"]
    assert records[1]["cold_start"] is True and records[2]["cold_start"] is False


def test_policy_from_extension(tmp_path: Path) -> None:
    """PALISADE_POLICY=extension asks the extension at install and uses its answer."""
    policy = {
        "version": 1,
        "mode": "block",
        "file": {"allow": [{"path": "/etc", "access": ["list"]}]},
    }
    fake = FakeExtension(tmp_path, policy=policy)
    try:
        env = child_env(
            tmp_path,
            PALISADE_POLICY="extension",
            PALISADE_EXTENSION_SOCKET=str(fake.sock_path),
            PALISADE_EXTENSION_KEY=str(fake.key_path),
        )
        script = (
            "import os, palisade\n"
            "def h(e, c):\n    os.listdir('/etc')\n    os.listdir('/root')\n"
            "try:\n    palisade.protect(h)({}, None)\n"
            "except PermissionError as exc:\n    print('PERMISSION', exc)\n"
        )
        run = run_script(tmp_path, script, env=env)
    finally:
        fake.close()
    assert fake.messages[0]["type"] == "policy"
    records = [m["record"] for m in fake.messages if m["type"] == "record"]
    assert records[-1]["mode"] == "block" and records[-1]["policy_id"]
    verdicts = [(e["target"], e["verdict"]) for e in records[-1]["events"]]
    assert verdicts == [("/etc", "allowed"), ("/root", "blocked")], run.describe()
    assert "PERMISSION" in run.stdout


def test_fallback_when_key_is_wrong(tmp_path: Path, extension: FakeExtension) -> None:
    """A refused frame (wrong key) falls back to PALISADE_OUTPUT and is counted."""
    wrong = tmp_path / "wrong.key"
    wrong.write_text(os.urandom(32).hex())
    env = child_env(
        tmp_path,
        PALISADE_EXTENSION_SOCKET=str(extension.sock_path),
        PALISADE_EXTENSION_KEY=str(wrong),
    )
    run = run_script(tmp_path, SCRIPT, env=env)
    assert extension.bad_frames >= 1 and extension.messages == []
    assert [r["transport_fallbacks"] for r in run.records] == [0, 1, 2], run.describe()


def test_frame_format() -> None:
    """encode/decode follow the contract: length, HMAC, JSON body; a bad MAC and an
    error reply are refused."""
    from palisade import transport
    from palisade.errors import TransportError

    key = b"k" * 32
    frame = transport.encode(key, {"type": "ack", "seq": 1})
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    assert transport.decode(key, frame[4:]) == {"type": "ack", "seq": 1}
    with pytest.raises(TransportError, match="bad MAC"):
        transport.decode(b"x" * 32, frame[4:])
    with pytest.raises(TransportError, match="refused"):
        transport.decode(key, b'{"type": "error", "reason": "bad mac"}')


def test_forked_child_uses_its_own_connection(tmp_path: Path) -> None:
    """A child forked after records were sent opens its own connection: both
    processes' records arrive and no frame is refused."""
    fake = FakeExtension(tmp_path)
    env = child_env(
        tmp_path,
        PALISADE_EXTENSION_SOCKET=str(fake.sock_path),
        PALISADE_EXTENSION_KEY=str(fake.key_path),
    )
    script = (
        "import os, types, palisade\n"
        "h = palisade.protect(lambda e, c: e)\n"
        "ctx = lambda rid: types.SimpleNamespace(aws_request_id=rid)\n"
        "h(1, ctx('parent-1'))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    h(2, ctx('child-1'))\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "h(3, ctx('parent-2'))\n"
    )
    try:
        run = run_script(tmp_path, script, env=env)
    finally:
        fake.close()
    got = sorted(
        m["record"]["request_id"] for m in fake.messages if m["type"] == "record"
    )
    assert got == ["child-1", "init", "parent-1", "parent-2"], run.describe()
    assert fake.bad_frames == 0, run.describe()
    assert [r["request_id"] for r in run.records] == [], run.describe()


def test_silent_extension_times_out_to_output(tmp_path: Path) -> None:
    """An extension that never answers costs at most the timeout per record; the
    records fall back to PALISADE_OUTPUT."""
    key = tmp_path / "k.key"
    key.write_text(os.urandom(32).hex())
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(4)  # never accepted: connects land in the backlog, no reply
    try:
        env = child_env(
            tmp_path,
            PALISADE_EXTENSION_SOCKET=str(tmp_path / "silent.sock"),
            PALISADE_EXTENSION_KEY=str(key),
            PALISADE_TRANSPORT_TIMEOUT_MS="100",
        )
        run = run_script(tmp_path, SCRIPT, env=env)
    finally:
        silent.close()
    assert "OUT done done" in run.stdout, run.describe()
    assert next(r["request_id"] for r in run.records) == "init"
    assert len(run.records) == 3
