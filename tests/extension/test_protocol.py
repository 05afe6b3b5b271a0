"""The layer → extension socket protocol: signing, replay, malformed frames."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from collections.abc import Iterator

import pytest
from ext_fakes import Layer, make_record
from palisade_extension import protocol
from palisade_extension.collector import Collector
from palisade_extension.drops import Drops
from palisade_extension.server import RecordServer, write_key


@pytest.fixture
def served(short_dir: str) -> Iterator[tuple[RecordServer, Collector, Drops, dict]]:
    paths = {
        "sock": os.path.join(short_dir, "p", "extension.sock"),
        "key": os.path.join(short_dir, "p", "extension.key"),
    }
    drops = Drops()
    collector = Collector()
    key = write_key(paths["key"])
    server = RecordServer(
        paths["sock"],
        key,
        drops,
        lambda record, body: collector.add_record(record),
        lambda: {"policy": {"version": 1}, "source": "inline"},
    )
    server.start()
    yield server, collector, drops, paths
    server.close()


def _raw(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_files_are_private(served):
    """The key file is 0600 and holds 64 hex digits; the socket is 0600."""
    _, _, _, paths = served
    assert stat.S_IMODE(os.stat(paths["key"]).st_mode) == 0o600
    with open(paths["key"]) as handle:
        assert len(bytes.fromhex(handle.read())) == 32
    assert stat.S_IMODE(os.stat(paths["sock"]).st_mode) == 0o600


def test_valid_record_is_acked_and_collected(served):
    """A signed record frame with a valid record gets a signed ack of its seq."""
    _, collector, drops, paths = served
    layer = Layer(paths["sock"], paths["key"])
    assert layer.record(make_record("r1")) == {"type": "ack", "seq": 1}
    assert layer.record(make_record("r2")) == {"type": "ack", "seq": 2}
    assert collector.has_record("r1") and collector.has_record("r2")
    assert drops.peek() == {}
    layer.close()


def test_policy_frame_is_answered(served):
    """A policy frame gets the policy document and its source, signed."""
    _, _, _, paths = served
    layer = Layer(paths["sock"], paths["key"])
    assert layer.policy() == {
        "type": "policy",
        "seq": 1,
        "policy": {"version": 1},
        "source": "inline",
    }
    layer.close()


def test_bad_mac_is_refused_counted_and_closed(served):
    """A frame signed with another key gets an unsigned error, the connection is
    closed, nothing is collected and the drop is counted as auth."""
    _, collector, drops, paths = served
    sock = _raw(paths["sock"])
    frame = protocol.encode(
        b"x" * 32, {"type": "record", "seq": 1, "record": make_record("r")}
    )
    sock.sendall(frame)
    reply = protocol.read_message(sock, b"unused")
    assert reply["type"] == "error" and reply["reason"].startswith("auth")
    assert _closed(sock)
    assert not collector.has_record("r")
    assert drops.peek() == {"auth": 1}


def test_replayed_seq_is_refused(served):
    """Replaying a frame (same seq) on a connection is refused as auth and closes it."""
    _, _collector, drops, paths = served
    layer = Layer(paths["sock"], paths["key"])
    frame = protocol.encode(
        layer.key, {"type": "record", "seq": 5, "record": make_record("a")}
    )
    layer.sock.sendall(frame)
    assert protocol.read_message(layer.sock, layer.key)["type"] == "ack"
    layer.sock.sendall(frame)
    reply = protocol.read_message(layer.sock, layer.key)
    assert reply["type"] == "error" and "seq 5" in reply["reason"]
    assert _closed(layer.sock)
    assert drops.peek() == {"auth": 1}


def test_reordered_seq_is_refused(served):
    """A lower seq after a higher one is refused."""
    _, _, drops, paths = served
    layer = Layer(paths["sock"], paths["key"])
    layer.seq = 10
    assert layer.record(make_record("a"))["type"] == "ack"
    layer.seq = 3
    assert layer.record(make_record("b"))["type"] == "error"
    assert drops.peek() == {"auth": 1}


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">I", 4) + b"abcd",  # shorter than a MAC
        struct.pack(">I", 0xFFFFFFFF),  # absurd length
        b"\x00\x00",  # truncated header, then EOF
    ],
)
def test_malformed_frames_are_counted(served, payload):
    """Frames with impossible lengths or cut short are counted as malformed."""
    _, _, drops, paths = served
    sock = _raw(paths["sock"])
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)
    assert _wait(lambda: drops.peek().get("malformed") == 1)


def test_signed_garbage_body_is_malformed(served):
    """A correctly signed body that is not a JSON object with seq/type is malformed."""
    _, _, drops, paths = served
    layer = Layer(paths["sock"], paths["key"])
    import hashlib
    import hmac

    for body in (b"not json", b"[1,2]", json.dumps({"type": "record"}).encode()):
        sock = _raw(paths["sock"])
        mac = hmac.new(layer.key, body, hashlib.sha256).digest()
        sock.sendall(struct.pack(">I", len(mac) + len(body)) + mac + body)
        reply = protocol.read_message(sock, layer.key)
        assert reply["type"] == "error"
        assert _closed(sock)
    assert drops.peek() == {"malformed": 3}


def test_invalid_record_is_dropped_with_reason_and_connection_survives(served):
    """A record that breaks record.schema.json is refused (signed error naming the
    problem), counted as invalid-record, and the connection keeps working."""
    _, collector, drops, paths = served
    layer = Layer(paths["sock"], paths["key"])
    bad = make_record("bad")
    del bad["function"]
    reply = layer.record(bad)
    assert reply["type"] == "error" and "function" in reply["reason"]
    assert layer.record(make_record("good")) == {"type": "ack", "seq": 2}
    assert not collector.has_record("bad") and collector.has_record("good")
    assert drops.peek() == {"invalid-record": 1}


def test_unknown_type_is_counted(served):
    """An authenticated frame of an unknown type is answered with an error."""
    _, _, drops, paths = served
    layer = Layer(paths["sock"], paths["key"])
    reply = layer.request({"type": "hello", "seq": 1})
    assert reply["type"] == "error"
    assert drops.peek() == {"malformed": 1}


def _wait(predicate, timeout: float = 5.0) -> bool:
    from ext_fakes import wait_until

    return wait_until(predicate, timeout)


def test_existing_shared_directory_keeps_its_mode(short_dir):
    """A key path in an existing directory does not change that directory's mode."""
    from palisade_extension.server import prepare_dir

    shared = os.path.join(short_dir, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    write_key(os.path.join(shared, "extension.key"))
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    fresh = os.path.join(short_dir, "a", "b")
    prepare_dir(fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700


def test_foreign_or_unsafe_directory_is_refused(short_dir):
    """A directory owned by another user, a symlink, or world-writable without the
    sticky bit is refused."""
    from palisade_extension.server import prepare_dir

    open_dir = os.path.join(short_dir, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    with pytest.raises(OSError, match="writable by everyone"):
        prepare_dir(open_dir)
    link = os.path.join(short_dir, "link")
    os.symlink(open_dir, link)
    with pytest.raises(OSError, match="not a directory"):
        prepare_dir(link)
    if os.getuid() == 0:
        foreign = os.path.join(short_dir, "foreign")
        os.mkdir(foreign, 0o700)
        os.chown(foreign, 54321, 54321)
        with pytest.raises(OSError, match="owned by uid 54321"):
            prepare_dir(foreign)
