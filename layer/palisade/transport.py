"""The layer's side of the extension socket: framed, authenticated JSON.

Frame (both ways): 4-byte big-endian length ``N``, then ``N`` bytes: the 32-byte
HMAC-SHA256 of the body under the shared key, then the body, a UTF-8 JSON object
with ``type`` and ``seq``. ``seq`` increases strictly on each connection. An
``error`` reply comes without a MAC and the extension closes the connection.

The key comes from a file the extension writes before it registers; the layer
reads it once at install and deletes it so that processes started later cannot
learn it. Every exchange is bounded by a timeout; callers fall back to the
output on any :class:`~palisade.errors.TransportError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import struct
import threading
from typing import Any

from .errors import TransportError

MAC_SIZE = 32
MAX_FRAME = 16 * 1024 * 1024


def read_key(path: str) -> bytes | None:
    """Read the hex key from ``path`` and delete the file; None if there is none.

    Raises:
        TransportError: the file exists but does not hold a hex key.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise TransportError(
            f"key file {path} holds {text[:16]!r}...; expected hex digits "
            "(64 for the 32-byte key the extension writes)"
        ) from exc
    if not key:
        raise TransportError(f"key file {path} is empty; expected 64 hex digits")
    return key


def encode(key: bytes, message: dict[str, Any]) -> bytes:
    """One frame carrying ``message``."""
    body = json.dumps(message, separators=(",", ":"), default=str).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return struct.pack(">I", len(mac) + len(body)) + mac + body


def decode(key: bytes, payload: bytes) -> dict[str, Any]:
    """The message in a frame's payload, checking its MAC.

    Raises:
        TransportError: a bad MAC, bad JSON, or an ``error`` reply.
    """
    mac, body = payload[:MAC_SIZE], payload[MAC_SIZE:]
    expected = hmac.new(key, body, hashlib.sha256).digest()
    if len(mac) == MAC_SIZE and hmac.compare_digest(mac, expected):
        return _json(body)
    if payload[:1] == b"{":
        reply = _json(payload)
        raise TransportError(f"extension refused the frame: {reply.get('reason')!r}")
    raise TransportError("reply from the extension has a bad MAC; ignored")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TransportError(
            f"extension sent bytes that are not JSON: {data[:40]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise TransportError(
            f"extension sent {type(value).__name__}; expected an object"
        )
    return value


class Client:
    """One connection to the extension, reopened after any failure."""

    def __init__(self, path: str, key: bytes, timeout_ms: int) -> None:
        self.path = path
        self.key = key
        self.timeout = timeout_ms / 1000.0
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` (``seq`` is added) and return the verified reply.

        Raises:
            TransportError: no socket, timeout, refused or malformed exchange.
        """
        with self._lock:
            try:
                return self._exchange(message)
            except TransportError:
                self.close()
                raise
            except (OSError, ValueError) as exc:
                self.close()
                raise TransportError(
                    f"extension socket {self.path} failed: {exc}"
                ) from exc

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._sock, self._seq = sock, 0
        self._seq += 1
        seq = self._seq
        self._sock.sendall(encode(self.key, {**message, "seq": seq}))
        reply = decode(self.key, self._recv_frame())
        if reply.get("seq") != seq:
            raise TransportError(
                f"extension answered seq {reply.get('seq')!r}; expected {seq}"
            )
        return reply

    def _recv_frame(self) -> bytes:
        header = self._recv_exact(4)
        (size,) = struct.unpack(">I", header)
        if size > MAX_FRAME:
            raise TransportError(f"extension frame of {size} bytes; limit {MAX_FRAME}")
        return self._recv_exact(size)

    def _recv_exact(self, size: int) -> bytes:
        assert self._sock is not None
        chunks = []
        while size:
            chunk = self._sock.recv(min(size, 65536))
            if not chunk:
                raise TransportError("extension closed the connection mid-frame")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def forget(self) -> None:
        """After fork: a new lock, and a connection of our own when next needed."""
        self._lock = threading.Lock()
        if self._sock is not None:
            # Closing the child's copy of the descriptor leaves the parent's open.
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Drop the connection; the next request reconnects."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
