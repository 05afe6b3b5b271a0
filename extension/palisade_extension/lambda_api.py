"""A client of the Lambda Extensions API and the Telemetry API subscription.

Base: ``http://${AWS_LAMBDA_RUNTIME_API}``; Extensions API ``/2020-01-01/extension``,
Telemetry API ``/2022-07-01/telemetry``. ``next_event`` has no timeout on purpose:
the call blocks while the environment is frozen.
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import Any

from palisade_extension.errors import LambdaApiError

log = logging.getLogger(__name__)

EXTENSION = "/2020-01-01/extension"
TELEMETRY = "/2022-07-01/telemetry"
TELEMETRY_SCHEMA = "2022-12-13"


class LambdaApi:
    """Register, next, init/exit errors and telemetry subscription."""

    def __init__(self, address: str):
        if not address:
            raise LambdaApiError(
                "AWS_LAMBDA_RUNTIME_API is not set; the extension must be started "
                "by Lambda (or the local sandbox)"
            )
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise LambdaApiError(f"AWS_LAMBDA_RUNTIME_API={address!r} is not host:port")
        self.address = address
        self._host = host.strip("[]")
        self._port = int(port)
        self.identifier = ""

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = 5.0,
    ) -> tuple[int, dict[str, str], bytes]:
        all_headers = {"Content-Type": "application/json"}
        if self.identifier:
            all_headers["Lambda-Extension-Identifier"] = self.identifier
        all_headers.update(headers or {})
        payload = None if body is None else json.dumps(body).encode("utf-8")
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), data
        except (OSError, http.client.HTTPException) as exc:
            raise LambdaApiError(
                f"{method} {path} on {self.address} failed: {exc}"
            ) from exc
        finally:
            conn.close()

    def register(self, name: str, events: list[str]) -> dict[str, Any]:
        """Register as ``name`` (the launcher's file name) for ``events``.

        Returns:
            The response body (functionName, functionVersion, handler).
        Raises:
            LambdaApiError: refused or unreachable.
        """
        status, headers, data = self._call(
            "POST",
            f"{EXTENSION}/register",
            {"events": events},
            {"Lambda-Extension-Name": name},
        )
        identifier = {k.lower(): v for k, v in headers.items()}.get(
            "lambda-extension-identifier", ""
        )
        if status != 200 or not identifier:
            raise LambdaApiError(
                f"register as {name!r} answered {status} "
                f"{data[:200].decode('utf-8', 'replace')!r}; the name must equal the "
                "file name in /opt/extensions"
            )
        self.identifier = identifier
        return _json(data)

    def next_event(self) -> dict[str, Any]:
        """Block until the next INVOKE or SHUTDOWN event."""
        status, _, data = self._call("GET", f"{EXTENSION}/event/next", timeout=None)
        if status != 200:
            text = data[:200].decode("utf-8", "replace")
            raise LambdaApiError(f"event/next answered {status} {text!r}")
        return _json(data)

    def report_error(self, phase: str, error_type: str, message: str) -> None:
        """POST /extension/{phase}/error (phase: init or exit); never raises."""
        try:
            self._call(
                "POST",
                f"{EXTENSION}/{phase}/error",
                {"errorMessage": message, "errorType": error_type, "stackTrace": []},
                {"Lambda-Extension-Function-Error-Type": error_type},
            )
        except LambdaApiError as exc:
            log.error("could not report %s error %s: %s", phase, error_type, exc)

    def subscribe_telemetry(self, uri: str) -> None:
        """Subscribe to platform telemetry, delivered to ``uri`` within 25 ms.

        Raises:
            LambdaApiError: the subscription was refused (the emulator, for
                instance, answers 202 with ``Telemetry.NotSupported``).
        """
        body = {
            "schemaVersion": TELEMETRY_SCHEMA,
            "types": ["platform"],
            "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
            "destination": {"protocol": "HTTP", "URI": uri},
        }
        status, _, data = self._call("PUT", TELEMETRY, body)
        text = data.decode("utf-8", "replace")
        if status not in (200, 202) or "NotSupported" in text:
            raise LambdaApiError(
                f"telemetry subscription answered {status}: {text[:200]}"
            )


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError as exc:
        raise LambdaApiError(f"expected a JSON object, got {data[:200]!r}") from exc
    if not isinstance(value, dict):
        raise LambdaApiError(f"expected a JSON object, got {type(value).__name__}")
    return value
