"""The AWS endpoint a sandboxed function talks to: always moto on loopback."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


def _quiet_handler() -> type[Any]:
    """moto's request handler with the per-request access log moved to debug.

    Werkzeug logs every request at INFO on its own stderr handler, so each AWS
    call of the function would print a line into ``palisade invoke``'s output.
    Server errors (5xx) stay visible as warnings; werkzeug's own error reports
    (tracebacks, bad requests) go through ``log_error`` and are left alone.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietRequestHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            level = logging.WARNING if str(code).startswith("5") else logging.DEBUG
            log.log(level, "moto %r %s %s", self.requestline, code, size)

    return QuietRequestHandler


class MotoEndpoint:
    """A moto server on a free loopback port, started and stopped by its owner.

    Attributes:
        url: ``http://127.0.0.1:<port>`` once started.
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start the server (imports moto lazily) and return its URL."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_quiet_handler()
        )
        self._thread = threading.Thread(
            target=server.serve_forever, name="moto", daemon=True
        )
        self._thread.start()
        host, port = server.server_address[:2]
        self._server = server
        self.url = f"http://{host!s}:{port}"
        log.debug("moto listening on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop the server; a no-op when it is not running."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.url = None

    def __enter__(self) -> MotoEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
