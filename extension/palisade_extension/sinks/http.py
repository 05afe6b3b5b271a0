"""``http``: the analyzer's ``POST /v1/batches``, signed with the analyzer key.

Headers: ``X-Palisade-Key-Id``, ``X-Palisade-Timestamp`` (unix seconds) and
``X-Palisade-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.
202 (stored) and 200 (duplicate) are delivered; 413 splits the batch in parts;
400 is permanent (the batch is dropped and counted as ``rejected``); 401/403,
5xx and network errors are retried from the spool.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

from palisade_extension.errors import ConfigError, SinkError
from palisade_extension.sinks.base import encode, split
from palisade_extension.sinks.signed import AnalyzerKey

PATH = "/v1/batches"


class HttpSink:
    """Posts batches to the analyzer."""

    key = "http"

    def __init__(self, url: str, analyzer_key: str, timeout_s: float):
        if not url:
            raise ConfigError(
                "PALISADE_SINK includes http but PALISADE_ANALYZER_URL is empty; "
                "set it to the analyzer's base URL"
            )
        self._key = AnalyzerKey.parse(analyzer_key)
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"PALISADE_ANALYZER_URL={url!r} is not an http(s) URL")
        self._parsed = parsed
        base = parsed.path.rstrip("/")
        self._path = base if base.endswith(PATH) else base + PATH
        self._timeout = timeout_s

    def _connection(self) -> http.client.HTTPConnection:
        host = self._parsed.hostname or ""
        if self._parsed.scheme == "https":
            return http.client.HTTPSConnection(
                host, self._parsed.port, timeout=self._timeout
            )
        return http.client.HTTPConnection(
            host, self._parsed.port, timeout=self._timeout
        )

    def send(self, batch: dict[str, Any]) -> None:
        body = encode(batch)
        status, text = self._post(body)
        if status in (200, 202):
            return
        if status == 413 and len(batch.get("records", [])) > 1:
            for part in split(batch, max(len(body) // 2, 1024)):
                self.send(part)
            return
        permanent = status in (400, 413)
        raise SinkError(
            f"analyzer answered {status} to batch {batch.get('batch_id')}: "
            f"{text[:200]}",
            permanent=permanent,
        )

    def _post(self, body: bytes) -> tuple[int, str]:
        headers = {"Content-Type": "application/json", **self._key.headers(body)}
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise SinkError(
                f"cannot reach the analyzer at {self._parsed.geturl()}: {exc}"
            ) from exc
        finally:
            conn.close()
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text
        return response.status, str(message)
