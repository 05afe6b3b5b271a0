"""The frame format between the layer and the extension.

A frame is a 4-byte big-endian length ``N`` followed by ``N`` bytes: a 32-byte
HMAC-SHA256 of the body under the shared key, then the body, a UTF-8 JSON object
with ``type`` and ``seq``. Error replies carry no MAC (the peer may not be trusted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
from typing import Any

from palisade_extension.errors import FrameError

MAC_SIZE = 32
# A record larger than this is refused rather than buffered: the layer bounds its
# own buffer far below it, so a bigger frame is a bug or an attack.
MAX_FRAME = 16 * 1024 * 1024
_LENGTH = struct.Struct(">I")


def encode(key: bytes, message: dict[str, Any]) -> bytes:
    """Sign and frame ``message``."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return _LENGTH.pack(len(mac) + len(body)) + mac + body


def encode_error(reason: str) -> bytes:
    """Frame an unsigned error reply."""
    body = json.dumps({"type": "error", "reason": reason}).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 16))
        if not chunk:
            if remaining == size and not chunks:
                return None
            raise FrameError(
                f"connection closed inside a frame: expected {size} bytes, got "
                f"{size - remaining}",
                "malformed",
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_raw(sock: socket.socket) -> bytes | None:
    """Read one frame's payload (MAC + body), or None at a clean end of stream.

    Raises:
        FrameError: the length is out of bounds or the stream ends mid-frame.
    """
    header = _read_exact(sock, _LENGTH.size)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size <= MAC_SIZE or size > MAX_FRAME:
        raise FrameError(
            f"frame length {size} is outside {MAC_SIZE + 1}..{MAX_FRAME}; expected "
            "a 32-byte MAC followed by a JSON body",
            "malformed",
        )
    payload = _read_exact(sock, size)
    if payload is None:
        raise FrameError("connection closed after a frame header", "malformed")
    return payload


def verify(key: bytes, payload: bytes) -> dict[str, Any]:
    """Check the MAC of a frame payload and decode its body.

    Raises:
        FrameError: reason ``auth`` for a bad MAC, ``malformed`` for a body that
            is not a JSON object with an integer ``seq`` and a string ``type``.
    """
    mac, body = payload[:MAC_SIZE], payload[MAC_SIZE:]
    expected = hmac.new(key, body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise FrameError("frame MAC does not match the extension key", "auth")
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"frame body is not UTF-8 JSON: {exc}", "malformed") from exc
    if not isinstance(message, dict):
        raise FrameError(
            f"frame body is a {type(message).__name__}, expected a JSON object",
            "malformed",
        )
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise FrameError(f"frame seq is {seq!r}, expected an integer", "malformed")
    if not isinstance(message.get("type"), str):
        raise FrameError(
            f"frame type is {message.get('type')!r}, expected a string", "malformed"
        )
    return message


def read_message(sock: socket.socket, key: bytes) -> dict[str, Any] | None:
    """Read and verify one signed frame (used by clients for replies)."""
    header = _read_exact(sock, _LENGTH.size)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"reply length {size} exceeds {MAX_FRAME}", "malformed")
    payload = _read_exact(sock, size) or b""
    if size > MAC_SIZE:
        try:
            return verify(key, payload)
        except FrameError:
            pass
    # Unsigned: only an error reply may come that way.
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"reply is neither signed nor JSON: {exc}", "auth") from exc
    if not isinstance(message, dict) or message.get("type") != "error":
        raise FrameError("unsigned reply that is not an error", "auth")
    return message
