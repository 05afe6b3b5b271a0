"""The AWS endpoint a sandboxed function talks to: always moto on loopback."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class MotoEndpoint:
    """A moto server on a free loopback port, started and stopped by its owner.

    Attributes:
        url: ``http://127.0.0.1:<port>`` once started.
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self._server: Any = None

    def start(self) -> str:
        """Start the server (imports moto lazily) and return its URL."""
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.url = f"http://{host}:{port}"
        log.debug("moto listening on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop the server; a no-op when it is not running."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self.url = None

    def __enter__(self) -> MotoEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
