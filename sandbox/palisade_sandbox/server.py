"""The HTTP server behind ``AWS_LAMBDA_RUNTIME_API``, on a free loopback port.

Routes (all under ``http://127.0.0.1:<port>``):

    GET  /2018-06-01/runtime/invocation/next
    POST /2018-06-01/runtime/invocation/{id}/response
    POST /2018-06-01/runtime/invocation/{id}/error
    POST /2018-06-01/runtime/init/error
    POST /2020-01-01/extension/register
    GET  /2020-01-01/extension/event/next
    POST /2020-01-01/extension/init/error
    POST /2020-01-01/extension/exit/error
    PUT  /2022-07-01/telemetry

Anything else is 404 (unknown path) or 405 (known path, wrong method).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .platform import Platform, Reply, error_reply

log = logging.getLogger(__name__)

_INVOCATION = re.compile(r"^/2018-06-01/runtime/invocation/([^/]+)/(response|error)$")
_ROUTES: dict[str, str] = {
    "/2018-06-01/runtime/invocation/next": "GET",
    "/2018-06-01/runtime/init/error": "POST",
    "/2020-01-01/extension/register": "POST",
    "/2020-01-01/extension/event/next": "GET",
    "/2020-01-01/extension/init/error": "POST",
    "/2020-01-01/extension/exit/error": "POST",
    "/2022-07-01/telemetry": "PUT",
}
# Request bodies above this are refused before they are read (the response limit
# is checked separately, with its documented error).
MAX_BODY_BYTES = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("api %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        return b""

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("chunked body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._body()
        except ValueError:
            body = None
        if body is None:
            self._send(
                error_reply(413, "RequestEntityTooLarge", "request body too large")
            )
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self._route(method, path, body, headers)
        except Exception:  # our bug: answer 500 rather than hang the caller
            log.exception("sandbox API failed on %s %s", method, path)
            reply = error_reply(500, "InternalServerError", "Internal Server Error")
        self._send(reply)

    def _route(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Reply:
        platform = self.server.platform
        match = _INVOCATION.match(path)
        if match:
            if method != "POST":
                return error_reply(405, "MethodNotAllowed", f"{method} not allowed")
            request_id, what = match.groups()
            if what == "response":
                return platform.runtime_response(request_id, body, headers)
            return platform.runtime_error(request_id, body, headers)
        expected = _ROUTES.get(path)
        if expected is None:
            return error_reply(404, "NotFound", f"no such API path {path!r}")
        if method != expected:
            return error_reply(
                405, "MethodNotAllowed", f"{path} takes {expected}, not {method}"
            )
        ident = headers.get("lambda-extension-identifier")
        if path.endswith("/runtime/invocation/next"):
            return platform.runtime_next()
        if path.endswith("/runtime/init/error"):
            return platform.runtime_init_error(body, headers)
        if path.endswith("/extension/register"):
            return platform.register(
                headers.get("lambda-extension-name"),
                body,
                headers.get("lambda-extension-accept-feature"),
            )
        if path.endswith("/extension/event/next"):
            return platform.extension_next(ident)
        if path.endswith("/extension/init/error"):
            return platform.extension_error("init", ident, headers, body)
        if path.endswith("/extension/exit/error"):
            return platform.extension_error("exit", ident, headers, body)
        return platform.subscribe(ident, body)

    def _send(self, reply: Reply) -> None:
        status, headers, body = reply
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the caller went away (killed, reset): nothing to tell
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, platform: Platform) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.platform = platform

    def handle_error(self, request: object, client_address: object) -> None:
        """Log an exception that escaped a request handler, once, via the logger.

        socketserver's default prints a traceback to stderr; a runtime or an
        extension killed mid-request (an init error, a reset) is routine here.
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("api client %s went away: %r", client_address, exc)
            return
        log.error("sandbox API failed serving %s", client_address, exc_info=exc)


class ApiServer:
    """The Runtime, Extensions and Telemetry APIs served from one thread.

    Attributes:
        address: ``127.0.0.1:<port>``, the value of ``AWS_LAMBDA_RUNTIME_API``.
    """

    def __init__(self, platform: Platform) -> None:
        self._server = _Server(platform)
        host, port = self._server.server_address[:2]
        self.address = f"{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="lambda-api",
            daemon=True,
        )

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (blocked handlers are released by
        ``Platform.close``)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
