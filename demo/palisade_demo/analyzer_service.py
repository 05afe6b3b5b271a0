"""Run the analyzer's HTTP service in a child process (loopback, free port).

Used by the demo while the ``palisade analyzer`` command is not available: it runs
``palisade_analyzer.server.AnalyzerServer`` (or, without that module, the
analyzer's ``Ingestor`` behind a minimal ``POST /v1/batches`` loop). It prints its
URL on the first stdout line and stops when its stdin closes. Configuration is
the analyzer's own (``PALISADE_ANALYZER_DB``, ``PALISADE_ANALYZER_KEYS`` and the
learning settings), read by ``load_settings``.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> int:
    from palisade_analyzer.ingest import Ingestor
    from palisade_analyzer.settings import load_settings
    from palisade_analyzer.signing import KeyRing
    from palisade_analyzer.sqlite_store import SQLiteStore

    settings = load_settings()
    store = SQLiteStore(settings.db)
    ingestor = Ingestor(store, KeyRing.load(settings.keys), settings)
    try:
        from palisade_analyzer.server import AnalyzerServer
    except ImportError:
        return _minimal(ingestor, store)
    service = AnalyzerServer(ingestor, store, settings, host="127.0.0.1", port=0)
    service.start()
    print(service.url, flush=True)
    sys.stdin.read()
    service.stop()
    store.close()
    return 0


def _minimal(ingestor: Any, store: Any) -> int:

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.split("?")[0] != "/v1/batches":
                self._reply(404, {"error": "not_found", "message": self.path})
                return
            result = ingestor.ingest(body, dict(self.headers.items()))
            self._reply(result.status, result.to_json())

        def _reply(self, status: int, doc: dict[str, Any]) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write("analyzer: " + (format % args) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
