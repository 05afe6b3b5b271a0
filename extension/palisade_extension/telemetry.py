"""The HTTP listener the Telemetry API posts platform records to.

Lambda delivers a JSON array of ``{time, type, record}`` per POST. The listener
answers at once and hands the array to the collector; it never logs per request,
since log lines of an extension can become telemetry themselves.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from palisade_extension.collector import Collector

log = logging.getLogger(__name__)

LAMBDA_RUNTIME_API = "127.0.0.1:9001"


def listener_host(setting: str, runtime_api: str) -> str:
    """The host to bind and advertise for PALISADE_TELEMETRY_HOST=``setting``.

    ``auto`` gives ``sandbox.localdomain`` inside Lambda (whose runtime API is
    always 127.0.0.1:9001) and the runtime API's own host elsewhere (the local
    sandbox), so no name lookup ever leaves the machine.
    """
    if setting and setting != "auto":
        return setting
    if runtime_api == LAMBDA_RUNTIME_API:
        return "sandbox.localdomain"
    host = runtime_api.rpartition(":")[0].strip("[]")
    return host or "127.0.0.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    collector: Collector


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
            items: Any = json.loads(self.rfile.read(length) or b"[]")
        except (ValueError, OSError):
            items = []
        if isinstance(items, list):
            self.server.collector.add_platform(items)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class TelemetryListener:
    """Serves the Telemetry API's POSTs on ``host`` at an ephemeral port."""

    def __init__(self, host: str, collector: Collector):
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        _Server.address_family = family
        self._server = _Server((host, 0), _Handler)
        self._server.collector = collector
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="palisade-telemetry",
            daemon=True,
        )

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
