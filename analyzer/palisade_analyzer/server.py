"""The analyzer's HTTP service (standard library ``ThreadingHTTPServer``).

Endpoints (all JSON; errors are ``{"error": code, "message": ...}``):

- ``POST /v1/batches``: a signed batch (see ``ingest``); 202 stored, 200 duplicate,
  400/401/403/411/413 rejected, 500 our failure (nothing stored).
- ``GET /v1/health``: ``{"status": "ok"}``.
- ``GET /v1/stats``: ingest counters (stored, duplicates, each rejection code).
- ``GET /v1/functions``: every function with its versions and learning state.
- ``GET /v1/functions/<f>/profile[?version=V]``: a version's profile.
- ``GET /v1/functions/<f>/trail[?request_id=ID][&since=T][&limit=N]``: events in
  order, of the N (100, at most 1000) most recent invocations.
- ``GET /v1/functions/<f>/policy[?stage=S][&min_invocations=N][&version=V]``: a
  proposed policy.
- ``GET /v1/alerts[?since=T][&function=F][&format=native|ocsf]``.

``since`` is unix seconds, ISO 8601, or a duration back from now (``15m``, ``2h``).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .ingest import Ingestor, IngestResult
from .ocsf import alert_to_ocsf
from .settings import Settings
from .store import Store
from .suggest import STAGES, suggest_policy
from .views import parse_since, profile_view, trail_view

log = logging.getLogger(__name__)

# The most invocations one trail answer holds: 1000 typical invocations are a few
# megabytes of JSON; more would let one request tie up a thread and the client.
MAX_TRAIL_LIMIT = 1000


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    server: AnalyzerServer
    protocol_version = "HTTP/1.1"
    # A client that stops sending mid-request must not hold its thread forever.
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc, default=str).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": code, "message": message})

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._error(
            405,
            "method_not_allowed",
            f"{self.command} is not served: POST /v1/batches, GET the /v1/ views",
        )

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path != "/v1/batches":
            self._error(404, "not_found", f"no endpoint POST {path}; use /v1/batches")
            return
        analyzer = self.server
        length_text = self.headers.get("content-length")
        if length_text is None or not length_text.strip().isdigit():
            analyzer.ingestor.count_rejection("length_required")
            self.close_connection = True
            self._error(411, "length_required", "send the batch with Content-Length")
            return
        length = int(length_text)
        limit = analyzer.settings.max_batch_bytes
        if length > limit:
            # Do not read a body we will refuse; close so it is not parsed as a request.
            analyzer.ingestor.count_rejection("batch_too_large")
            self.close_connection = True
            self._error(
                413,
                "batch_too_large",
                f"batch body is {length} bytes; the limit is {limit} "
                "(PALISADE_ANALYZER_MAX_BATCH_BYTES): send smaller batches",
            )
            return
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items()}
        result: IngestResult = analyzer.ingestor.ingest(body, headers)
        self._send(result.status, result.to_json())

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
        try:
            status, doc = self._route(segments, query)
        except _BadRequest as bad:
            self._error(bad.status, bad.code, bad.message)
            return
        except Exception as exc:
            log.exception("GET %s failed", self.path)
            self._error(500, "internal_error", f"{type(exc).__name__}: {exc}")
            return
        self._send(status, doc)

    def _route(self, segments: list[str], query: dict[str, str]) -> tuple[int, Any]:
        store = self.server.store
        settings = self.server.settings
        if segments[:1] != ["v1"]:
            raise _BadRequest(404, "not_found", "endpoints live under /v1/")
        rest = segments[1:]
        if rest == ["health"]:
            return 200, {"status": "ok"}
        if rest == ["stats"]:
            return 200, {"stats": store.stats()}
        if rest == ["functions"]:
            return 200, {
                "functions": [
                    {
                        "function": f,
                        "versions": [v.to_json() for v in store.versions(f)],
                    }
                    for f in store.functions()
                ]
            }
        if rest == ["alerts"]:
            since = self._since(query)
            fmt = query.get("format", "native")
            if fmt not in ("native", "ocsf"):
                raise _BadRequest(400, "bad_format", f"format {fmt!r}: native or ocsf")
            alerts = store.alerts(since=since, function=query.get("function"))
            docs = [alert_to_ocsf(a) if fmt == "ocsf" else a.to_json() for a in alerts]
            return 200, {"alerts": docs}
        if len(rest) == 3 and rest[0] == "functions":
            function, what = rest[1], rest[2]
            if what == "profile":
                view = profile_view(store, function, query.get("version"), settings)
                if view is None:
                    raise _BadRequest(
                        404, "unknown_function", f"no profile for {function!r}"
                    )
                return 200, view
            if what == "trail":
                text = query.get("limit", "100")
                if not (text.isdigit() and 1 <= int(text) <= MAX_TRAIL_LIMIT):
                    raise _BadRequest(
                        400,
                        "bad_limit",
                        f"limit {text!r:.40}: expected an integer from 1 to "
                        f"{MAX_TRAIL_LIMIT} (page with since= for more)",
                    )
                return 200, trail_view(
                    store,
                    function,
                    query.get("request_id"),
                    self._since(query),
                    int(text),
                )
            if what == "policy":
                return 200, self._policy(function, query)
        raise _BadRequest(404, "not_found", f"no endpoint GET /{'/'.join(segments)}")

    def _since(self, query: dict[str, str]) -> float | None:
        try:
            return parse_since(query.get("since"))
        except ValueError as exc:
            raise _BadRequest(400, "bad_since", str(exc)) from exc

    def _policy(self, function: str, query: dict[str, str]) -> dict[str, Any]:
        stage = query.get("stage", "full")
        if stage not in STAGES:
            raise _BadRequest(
                400,
                "bad_stage",
                f"stage {stage!r}: expected one of {', '.join(STAGES)}",
            )
        text = query.get("min_invocations", "3")
        if not text.isdigit():
            raise _BadRequest(
                400, "bad_min_invocations", f"min_invocations {text!r}: an integer"
            )
        try:
            return suggest_policy(
                self.server.store,
                function,
                version=query.get("version"),
                stage=stage,
                min_invocations=int(text),
                settings=self.server.settings,
            )
        except LookupError as exc:
            raise _BadRequest(404, "unknown_function", str(exc)) from exc


class AnalyzerServer(ThreadingHTTPServer):
    """The HTTP service over one ingestor and store."""

    daemon_threads = True

    def __init__(
        self,
        ingestor: Ingestor,
        store: Store,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.ingestor = ingestor
        self.store = store
        self.settings = settings
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The bound base URL (``http://127.0.0.1:PORT``)."""
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}"

    def start(self) -> None:
        """Serve in a background thread (tests, embedding)."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="palisade-analyzer-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
