"""The Unix socket the layer sends its records to.

Files are created before the extension registers, so the layer finds them when the
runtime starts: the directory (0700), the key file (0600, 32 random bytes as hex)
and the socket. Each connection is served by its own thread; a frame that fails
authentication, replays a sequence number or cannot be parsed is answered with an
unsigned error and the connection is closed. Every refused frame is counted.

Limitation: replay protection is per connection (``seq`` increases on each one);
a frame captured from one connection could be replayed on a new one. What keeps
other code from forging frames is the key, readable only by the function's user
and deleted by the layer at install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import stat
import threading
from collections.abc import Callable
from typing import Any

from palisade_extension import protocol, records
from palisade_extension.drops import Drops
from palisade_extension.errors import FrameError

log = logging.getLogger(__name__)

# (record, the frame body it came in) -> None; raises only when it could not be kept.
RecordSink = Callable[[dict[str, Any], bytes], None]
PolicyAnswer = Callable[[], dict[str, Any]]


def prepare_dir(path: str) -> None:
    """Create ``path`` as a private (0700) directory, or accept an existing one
    that is ours and not writable by others.

    An existing directory keeps its mode: it may be a shared one such as /tmp
    when a setting points there, and the key and socket are 0600 themselves.

    Raises:
        OSError: the path is a symlink, not a directory, owned by another user
            (root excepted), or writable by others without the sticky bit.
    """
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # whatever the umask said
        return
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
        return
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} exists and is not a directory; remove it")
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (os.getuid(), 0):
        raise OSError(
            f"{path} is owned by uid {info.st_uid}, not by this process "
            f"(uid {os.getuid()}); remove it"
        )
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise OSError(
            f"{path} is writable by everyone (mode {mode:o}); fix or remove it"
        )


def write_key(path: str) -> bytes:
    """Write a fresh 32-byte key, hex, to ``path`` (0600) and return the raw key."""
    prepare_dir(os.path.dirname(path) or ".")
    key = secrets.token_bytes(32)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key.hex().encode("ascii"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


class RecordServer:
    """Accepts the layer's connections and feeds valid records to ``on_record``."""

    def __init__(
        self,
        path: str,
        key: bytes,
        drops: Drops,
        on_record: RecordSink,
        policy: PolicyAnswer,
    ):
        self.path = path
        self._key = key
        self._drops = drops
        self._on_record = on_record
        self._policy = policy
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.counts = {"records": 0, "acks": 0, "refused": 0}

    def start(self) -> None:
        """Bind the socket (0600) and start accepting.

        Raises:
            OSError: the socket cannot be created.
        """
        prepare_dir(os.path.dirname(self.path) or ".")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._accept_loop, name="palisade-socket", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, close every connection and remove the socket file."""
        self._closing.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closing.is_set():
                    return
                continue
            with self._lock:
                self._connections.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name="palisade-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        last_seq: int | None = None
        try:
            while not self._closing.is_set():
                try:
                    payload = protocol.read_raw(conn)
                    if payload is None:
                        return
                    message = protocol.verify(self._key, payload)
                    seq = message["seq"]
                    if last_seq is not None and seq <= last_seq:
                        raise FrameError(
                            f"seq {seq} is not above the previous {last_seq}; "
                            "a replayed or reordered frame",
                            "auth",
                        )
                    last_seq = seq
                except FrameError as exc:
                    self._refuse(conn, exc)
                    return
                reply = self._answer(message, payload[protocol.MAC_SIZE :])
                conn.sendall(protocol.encode(self._key, reply))
        except OSError as exc:
            log.debug("layer connection ended: %s", exc)
        except Exception:  # never let a connection thread take the extension down
            log.exception("internal error while serving the layer's connection")
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _refuse(self, conn: socket.socket, exc: FrameError) -> None:
        self.counts["refused"] += 1
        self._drops.add(exc.reason)
        log.warning("refused a frame from the layer (%s): %s", exc.reason, exc)
        with contextlib.suppress(OSError):
            conn.sendall(protocol.encode_error(f"{exc.reason}: {exc}"))

    def _answer(self, message: dict[str, Any], body: bytes) -> dict[str, Any]:
        seq = message["seq"]
        kind = message["type"]
        if kind == "policy":
            answer = dict(self._policy())
            answer.update({"type": "policy", "seq": seq})
            return answer
        if kind != "record":
            self._drops.add("malformed")
            return {"type": "error", "seq": seq, "reason": f"unknown type {kind!r}"}
        self.counts["records"] += 1
        record = message.get("record")
        issues = records.problems(record)
        if issues:
            self._drops.add("invalid-record")
            log.warning("dropped an invalid record: %s", "; ".join(issues))
            return {
                "type": "error",
                "seq": seq,
                "reason": "invalid-record: " + "; ".join(issues),
            }
        assert isinstance(record, dict)
        try:
            self._on_record(record, body)
        except Exception as exc:
            self._drops.add("internal")
            log.exception("could not keep a record")
            return {"type": "error", "seq": seq, "reason": f"internal: {exc}"}
        self.counts["acks"] += 1
        return {"type": "ack", "seq": seq}
