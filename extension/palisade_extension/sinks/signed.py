"""Signing batches with the analyzer key, for HTTP and for stream envelopes.

The analyzer authenticates a batch by ``X-Palisade-Key-Id``,
``X-Palisade-Timestamp`` (unix seconds) and
``X-Palisade-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.
Over HTTP these are headers. On Kinesis and SQS, where a message has no headers,
each message is an envelope ``{"schema": "palisade.signed/1", "headers": {...},
"body": "<batch JSON text>"}`` carrying the same signed bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from palisade_extension.errors import ConfigError

ENVELOPE_SCHEMA = "palisade.signed/1"


@dataclass(frozen=True)
class AnalyzerKey:
    """A parsed PALISADE_ANALYZER_KEY (``<key_id>:<secret>``)."""

    key_id: str
    secret: bytes

    @classmethod
    def parse(cls, text: str) -> AnalyzerKey:
        """Raises ConfigError when ``text`` is not ``<key_id>:<secret>``."""
        key_id, sep, secret = text.partition(":")
        if not sep or not key_id or not secret:
            raise ConfigError(
                "PALISADE_ANALYZER_KEY must be '<key_id>:<secret>', found "
                f"{'an empty value' if not text else 'no colon or an empty part'}"
            )
        return cls(key_id, secret.encode("utf-8"))

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The three signature headers of ``body``."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "X-Palisade-Key-Id": self.key_id,
            "X-Palisade-Timestamp": stamp,
            "X-Palisade-Signature": sign(self.secret, stamp, body),
        }

    def envelope(self, body: bytes) -> bytes:
        """A ``palisade.signed/1`` message holding ``body`` and its signature."""
        document = {
            "schema": ENVELOPE_SCHEMA,
            "headers": self.headers(body),
            "body": body.decode("utf-8"),
        }
        return json.dumps(document, separators=(",", ":")).encode("utf-8")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Palisade-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"
