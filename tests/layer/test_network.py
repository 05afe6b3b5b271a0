"""Network operations: normalised addresses, names from the process's own lookups,
and a blocked connect leaves no connection at the loopback listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from layer_harness import EXPECTED, run_handler


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener on a free port, non-blocking, closed afterwards."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "0177.0.0.1"]


@pytest.mark.parametrize("host", SPELLINGS)
def test_connect_spellings_normalised(
    tmp_path: Path, mode: str, listener: socket.socket, host: str
) -> None:
    """Every IPv4 spelling of loopback is decided as 127.0.0.1:PORT; blocked, the
    listener sees no connection."""
    port = listener.getsockname()[1]
    body = f"""
    s = socket.socket()
    try:
        s.connect(({host!r}, {port}))
    finally:
        s.close()
    """
    run = run_handler(tmp_path, body, PALISADE_MODE=mode)
    event = run.one("network", "connect")
    assert event["target"] == f"127.0.0.1:{port}", run.describe()
    assert event["detail"]["ip"] == "127.0.0.1"
    assert event["detail"]["protocol"] == "tcp"
    assert event["module"] == "__main__"
    assert event["verdict"] == EXPECTED[mode]
    assert _connections(listener) == (0 if mode == "block" else 1)


def test_connect_ex_nonblocking_and_ipv4_mapped(
    tmp_path: Path, listener: socket.socket
) -> None:
    """connect_ex on a non-blocking socket and an IPv4-mapped IPv6 address are
    both recorded with the canonical IPv4 address."""
    port = listener.getsockname()[1]
    body = f"""
    s = socket.socket(); s.setblocking(False)
    s.connect_ex(('127.0.0.1', {port})); s.close()
    s6 = socket.socket(socket.AF_INET6)
    try:
        s6.connect_ex(('::ffff:127.0.0.1', {port}, 0, 0))
    finally:
        s6.close()
    """
    run = run_handler(tmp_path, body)
    targets = [e["target"] for e in run.events("network", "connect")]
    assert targets == [f"127.0.0.1:{port}"] * 2, run.describe()
    assert [e["detail"]["family"] for e in run.events("network", "connect")] == [
        "ipv4",
        "ipv6",
    ]


def test_ipv6_loopback(tmp_path: Path) -> None:
    """An IPv6 connect is bracketed host:port with the compressed address."""
    body = """
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.connect(('0:0:0:0:0:0:0:1', 9)); s.close()
    """
    run = run_handler(tmp_path, body)
    event = run.one("network", "connect")
    assert event["target"] == "[::1]:9" and event["detail"]["protocol"] == "udp"


def test_udp_sendto_bind_listen(tmp_path: Path, mode: str) -> None:
    """sendto with an address, bind and listen are events; blocked, the datagram
    never arrives."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    port = receiver.getsockname()[1]
    body = f"""
    done = []
    for step in ('sendto', 'bind', 'listen'):
        try:
            if step == 'sendto':
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.sendto(b'hello', ('127.0.0.1', {port})); u.close()
            elif step == 'bind':
                t = socket.socket(); t.bind(('127.0.0.1', 0))
            else:
                t.listen(); t.close()
            done.append(step)
        except PermissionError:
            pass
    return done
    """
    policy_free = run_handler(tmp_path, body, PALISADE_MODE=mode)
    try:
        got = receiver.recv(100)
    except BlockingIOError:
        got = None
    receiver.close()
    sendto = policy_free.one("network", "sendto")
    assert sendto["target"] == f"127.0.0.1:{port}"
    assert sendto["verdict"] == EXPECTED[mode]
    bind = policy_free.one("network", "bind")
    assert bind["target"] == "127.0.0.1:0"
    if mode == "block":
        assert got is None
        assert "RESULT []" in policy_free.stdout, policy_free.describe()
    else:
        assert got == b"hello"
        listen = policy_free.one("network", "listen")
        assert listen["target"].startswith("127.0.0.1:")
        assert listen["verdict"] == EXPECTED[mode]


def test_unix_socket_connect(tmp_path: Path) -> None:
    """An AF_UNIX connect is a network event whose target is the socket path."""
    path = tmp_path / "app.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    body = f"""
    c = socket.socket(socket.AF_UNIX); c.connect({str(path)!r}); c.close()
    """
    try:
        run = run_handler(tmp_path, body, PALISADE_MODE="alert")
    finally:
        server.close()
    event = run.one("network", "connect")
    assert event["target"] == str(path) and event["detail"]["family"] == "unix"
    assert event["verdict"] == "alerted"


def test_dns_answers_name_the_connect(tmp_path: Path, listener: socket.socket) -> None:
    """getaddrinfo('localhost') is a dns:resolve event with its answers, and the
    connect to the answer that follows carries the name (resolved_from)."""
    port = listener.getsockname()[1]
    body = f"""
    socket.create_connection(('localhost', {port})).close()
    """
    run = run_handler(tmp_path, body, PALISADE_MODE="alert")
    lookup = run.one("dns", "resolve", "localhost")
    assert (
        "127.0.0.1" in lookup["detail"]["answers"]
        or "::1" in lookup["detail"]["answers"]
    )
    connect = run.events("network", "connect")[0]
    assert connect["detail"]["resolved_from"] == "localhost"
    assert connect["target"] == f"localhost:{port}"


def test_dns_blocked_before_lookup(tmp_path: Path) -> None:
    """In block mode a lookup of an unlisted name raises before any query."""
    body = "return socket.getaddrinfo('example.invalid', 443)"
    run = run_handler(tmp_path, body, PALISADE_MODE="block")
    assert "PERMISSION palisade blocked dns resolve 'example.invalid'" in run.stdout
    assert "answers" not in run.one("dns", "resolve")["detail"]


def test_metadata_address_blocked_by_builtin(tmp_path: Path) -> None:
    """A connect to the link-local metadata address is blocked by the built-in
    rule before it happens (nothing is sent anywhere)."""
    body = """
    s = socket.socket(); s.settimeout(0.1)
    try:
        s.connect(('169.254.169.254', 80))
    finally:
        s.close()
    """
    run = run_handler(tmp_path, body, PALISADE_MODE="block")
    event = run.one("network", "connect")
    assert event["verdict"] == "blocked" and event["rule"].startswith("builtin:")


def test_sendmsg_and_gethostbyname(tmp_path: Path, mode: str) -> None:
    """sendmsg with an address is network:sendto; gethostbyname of a name is
    dns:resolve; blocked, the datagram never arrives."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    port = receiver.getsockname()[1]
    body = f"""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.sendmsg([b'msg'], [], 0, ('127.0.0.1', {port}))
    except PermissionError:
        pass
    u.close()
    return socket.gethostbyname('localhost')
    """
    run = run_handler(tmp_path, body, PALISADE_MODE=mode)
    try:
        got = receiver.recv(100)
    except BlockingIOError:
        got = None
    receiver.close()
    assert run.one("network", "sendto")["verdict"] == EXPECTED[mode]
    assert run.one("dns", "resolve", "localhost")["verdict"] == EXPECTED[mode]
    assert got == (None if mode == "block" else b"msg")
