"""``palisade invoke``: run a handler in the local sandbox with Palisade attached.

    palisade invoke app.handler --code-dir src --events events.jsonl --mode alert

Every invocation runs in one warm sandbox with the layer (through
``AWS_LAMBDA_EXEC_WRAPPER``) and the extension from this checkout, or from a layer
zip given with ``--layer``. The extension ships its batches to a file in the
sandbox (and to the analyzer with ``--analyzer``/``--db``); after the run the CLI
reads them back and prints each invocation's result and what the function did.

Shortcoming: ``--db`` runs the analyzer's ``Ingestor`` behind a minimal loopback
endpoint made for the run, not the analyzer's own service, so only ingestion (and
the detection it performs) happens during the run.

Exit status: 0 when every invocation returned normally, 1 when one failed (error,
timeout, crash, init error), 2 for a mistake in the command itself (checked
before anything starts), 130 on SIGINT and 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from .layout import REPO_ROOT
from .sandbox import (
    MAX_MEMORY_MB,
    MAX_REQUEST_BYTES,
    MAX_TIMEOUT_S,
    MIN_MEMORY_MB,
    InvocationResult,
    Sandbox,
)

log = logging.getLogger(__name__)

PROG = "palisade invoke"
VERDICT_ORDER = ("blocked", "alerted", "allowed")
MAX_ALLOWED_LINES = 40
MAX_PAYLOAD_CHARS = 400


class UsageError(Exception):
    """A mistake in the command line or its input files (exit status 2).

    A message of several lines (one per problem) is printed line by line.
    """


class Terminated(BaseException):
    """SIGTERM arrived; raised in the main thread so every cleanup runs.

    A BaseException, as KeyboardInterrupt is, so no ``except Exception`` on the
    way up swallows it.
    """


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM must not cut the cleanup short (SIGKILL still does).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``palisade invoke``."""
    parser = _Parser(
        prog=PROG,
        description="Run a Lambda handler locally with Palisade attached.",
    )
    parser.add_argument("handler", help="module.function, as in Lambda's Handler")
    parser.add_argument(
        "--code-dir", default=".", help="the function's code (default: .)"
    )
    events = parser.add_mutually_exclusive_group()
    events.add_argument("--event", help="a JSON file with one event ('-': stdin)")
    events.add_argument("--events", help="a JSON Lines file, one event per line")
    parser.add_argument("--policy", help="the function's policy file (JSON or YAML)")
    parser.add_argument(
        "--mode", choices=("monitor", "alert", "block"), help="override the mode"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="function timeout in seconds, at most 900 (default 3, as in Lambda)",
    )
    parser.add_argument(
        "--memory", type=int, default=128, help="memory size in MB, 128-10240"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a function environment variable (repeatable)",
    )
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument("--analyzer", metavar="URL", help="also ship to this analyzer")
    sink.add_argument(
        "--db", metavar="PATH", help="also ship to a local analyzer on this SQLite file"
    )
    parser.add_argument(
        "--analyzer-key",
        metavar="KEY_ID:SECRET",
        help="signing key for --analyzer (PALISADE_ANALYZER_KEY)",
    )
    parser.add_argument(
        "--layer",
        metavar="ZIP|DIR",
        help="use this layer zip or unpacked /opt instead of the source checkout",
    )
    parser.add_argument(
        "--no-protect",
        action="store_true",
        help="run without the layer and extension (plain Lambda behaviour)",
    )
    parser.add_argument(
        "--no-freeze", action="store_true", help="do not SIGSTOP between invokes"
    )
    parser.add_argument(
        "--json", action="store_true", help="print invocation records as JSON lines"
    )
    return parser


# ------------------------------------------------------------------ inputs


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings to a dict.

    Raises:
        UsageError: a pair has no ``=`` or an empty key.
    """
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env expects KEY=VALUE; found {pair!r}")
        env[key] = value
    return env


def read_events(event: str | None, events: str | None) -> list[Any]:
    """The events to send: one from ``--event``, many from ``--events``, or ``{}``.

    Raises:
        UsageError: a file is missing, holds invalid JSON (NaN and Infinity
            included) or an event over Lambda's 6 MB limit (with the line number).
    """
    if event is not None:
        text = sys.stdin.read() if event == "-" else _read(event, "--event")
        try:
            doc = _strict_json(text)
        except ValueError as exc:
            raise UsageError(f"--event {event}: not valid JSON: {exc}") from exc
        _check_size(doc, f"--event {event}: the event")
        return [doc]
    if events is not None:
        found = []
        for number, line in enumerate(_read(events, "--events").splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = _strict_json(line)
            except ValueError as exc:
                raise UsageError(
                    f"--events {events}: line {number} is not valid JSON: {exc.args[0]}"
                ) from exc
            _check_size(doc, f"--events {events}: line {number}")
            found.append(doc)
        if not found:
            raise UsageError(f"--events {events}: no events in the file")
        return found
    return [{}]


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; Lambda's JSON parsers do not, so
    # such an event would only fail later as Runtime.UnmarshalError.
    raise ValueError(
        f"{name} is not a JSON value (standard JSON has no NaN or Infinity; "
        "use null or a string)"
    )


def _strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse_constant)


def _check_size(event: Any, where: str) -> None:
    # Measured as the sandbox will send it, which is what Lambda would receive.
    size = len(json.dumps(event).encode())
    if size > MAX_REQUEST_BYTES:
        raise UsageError(
            f"{where} is {size} bytes as JSON; Lambda refuses synchronous "
            f"payloads over {MAX_REQUEST_BYTES} bytes "
            "(RequestEntityTooLargeException)"
        )


def _read(path: str, option: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"{option}: no such file {path!r}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option}: cannot read {path!r}: {exc}") from exc


def check_limits(timeout: float, memory: int) -> None:
    """Check ``--timeout`` and ``--memory`` against Lambda's limits.

    Raises:
        UsageError: the timeout is not a finite number in (0, 900] seconds or the
            memory is outside 128-10240 MB.
    """
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
        raise UsageError(
            "--timeout must be a finite number of seconds above 0 and at most "
            f"{MAX_TIMEOUT_S:g} (Lambda's limit); found {timeout!r}"
        )
    if not MIN_MEMORY_MB <= memory <= MAX_MEMORY_MB:
        raise UsageError(
            f"--memory must be {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MB (Lambda's "
            f"range); found {memory}"
        )


def check_analyzer_url(url: str) -> None:
    """Check that ``--analyzer`` is an http(s) URL with a host.

    Raises:
        UsageError: it is not.
    """
    expected = "--analyzer expects an http:// or https:// URL such as "
    expected += "http://127.0.0.1:8080"
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise UsageError(f"{expected}; found {url!r} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"{expected}; found {url!r}")


def check_policy(path: str) -> None:
    """Validate the policy file as the layer and the extension will load it.

    Without this an invalid policy only shows up on the extension's stderr and
    the run silently falls back to monitoring, whatever ``--mode`` says.

    Raises:
        UsageError: the file is missing, unparsable or invalid; one line per
            problem, worded as ``palisade policy validate`` words it.
    """
    if not Path(path).is_file():
        raise UsageError(f"--policy: no such file {path!r}")
    try:
        from palisade.errors import PolicyError
        from palisade.policy import load_policy_document
    except ImportError as exc:  # a layer-only install: the extension still checks
        log.warning("cannot validate --policy %s here: %s", path, exc)
        return
    try:
        load_policy_document(Path(path))
    except PolicyError as exc:
        issues = exc.issues or [("$", str(exc))]
        raise UsageError(
            "\n".join(f"{path}: {where}: {message}" for where, message in issues)
        ) from exc


def check_handler(handler: str, code_dir: Path) -> None:
    """Check that ``handler`` names a module file in ``code_dir``.

    Raises:
        UsageError: the code directory or the handler's module is missing.
    """
    if not code_dir.is_dir():
        raise UsageError(f"--code-dir: no such directory {str(code_dir)!r}")
    module, dot, function = handler.rpartition(".")
    if not dot or not module or not function:
        raise UsageError(
            f"handler must be module.function (for example app.handler); "
            f"found {handler!r}"
        )
    base = code_dir / module.replace(".", "/").replace("/", os.sep)
    if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
        raise UsageError(
            f"handler {handler!r}: no module {module!r} in {str(code_dir)!r} "
            f"(expected {base.with_suffix('.py').name} or {base.name}/__init__.py)"
        )


# ---------------------------------------------------------------- records


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """JSON objects from a JSON Lines file, skipping lines that are not objects."""
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            yield doc


def collect_records(*paths: Path) -> list[dict[str, Any]]:
    """Invocation records from batch files (extension) and record files (layer),
    each record once (by request id; the first source wins)."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in paths:
        for doc in read_jsonl(path):
            candidates = (
                doc["records"] if isinstance(doc.get("records"), list) else [doc]
            )
            for record in candidates:
                if not isinstance(record, dict) or "events" not in record:
                    continue
                key = str(record.get("request_id"))
                if key in seen:
                    continue
                seen.add(key)
                records.append(record)
    return records


def behaviour_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """A readable summary: each distinct operation, its verdict and package."""
    counts: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for record in records:
        for event in record.get("events", []):
            counts[
                (
                    str(event.get("verdict", "?")),
                    str(event.get("kind", "?")),
                    str(event.get("op", "?")),
                    str(event.get("target", "")),
                    str(event.get("module", "?")),
                    str(event.get("rule", "?")),
                )
            ] += 1
    if not counts:
        return ["  (no events recorded)"]
    lines = []
    totals = Counter(key[0] for key in counts.elements())
    lines.append(
        "  "
        + ", ".join(f"{totals.get(v, 0)} {v}" for v in VERDICT_ORDER)
        + f" in {len(records)} record(s)"
    )
    for verdict in VERDICT_ORDER:
        rows = sorted(
            ((k, n) for k, n in counts.items() if k[0] == verdict),
            key=lambda item: (item[0][1], item[0][2], item[0][3]),
        )
        shown = rows if verdict != "allowed" else rows[:MAX_ALLOWED_LINES]
        for (verd, kind, op, target, module, rule), n in shown:
            times = f" x{n}" if n > 1 else ""
            lines.append(
                f"  {verd:<8} {kind} {op} {target}  by {module}  [{rule}]{times}"
            )
        if len(rows) > len(shown):
            lines.append(f"  ... and {len(rows) - len(shown)} more {verdict}")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    if len(text) > MAX_PAYLOAD_CHARS:
        return text[:MAX_PAYLOAD_CHARS] + f"... ({len(text)} chars)"
    return text


def result_lines(index: int, result: InvocationResult) -> list[str]:
    """How one invocation ended, for people."""
    start = "cold start" if result.cold_start else "warm"
    if result.cold_start and result.init_duration_ms is not None:
        start += f", init {result.init_duration_ms:.1f} ms"
    lines = [
        f"[{index}] {result.request_id} {result.status} "
        f"{result.duration_ms:.1f} ms ({start})"
    ]
    if result.ok:
        lines.append(f"    result: {_short(result.payload)}")
    else:
        error = result.error or {}
        lines.append(
            f"    {error.get('errorType', 'error')}: {error.get('errorMessage', '')}"
        )
    if result.ok and result.reset_reason == "timeout":
        late = ", ".join(result.timed_out) or "an extension"
        lines.append(
            f"    timeout: {late} had not called next when the invoke phase's "
            "timeout ran out; the response above was returned, as Lambda does, "
            "but the environment was reset (the next invoke is a cold start)"
        )
    lines.extend(f"    | {line}" for line in result.logs)
    return lines


# ------------------------------------------------------------------ running


def protection_env(
    args: argparse.Namespace, opt_dir: Path | None, files: dict[str, Path]
) -> dict[str, str]:
    """The PALISADE_* variables and exec wrapper for a protected run."""
    env: dict[str, str] = {}
    if opt_dir is not None:
        wrapper = opt_dir / "palisade-exec-wrapper"
        if wrapper.exists():
            env["AWS_LAMBDA_EXEC_WRAPPER"] = str(wrapper)
    sinks = [f"file:{files['batches']}"]
    if args.analyzer:
        sinks.insert(0, "http")
        env["PALISADE_ANALYZER_URL"] = args.analyzer
        if args.analyzer_key:
            env["PALISADE_ANALYZER_KEY"] = args.analyzer_key
    env["PALISADE_SINK"] = ",".join(sinks)
    env["PALISADE_OUTPUT"] = f"file:{files['records']}"
    env["PALISADE_SPOOL_DIR"] = str(files["spool"])
    if args.mode:
        env["PALISADE_MODE"] = args.mode
    if args.policy:
        env["PALISADE_POLICY"] = str(Path(args.policy).resolve())
    return env


def _opt_for(args: argparse.Namespace) -> str | Path | None:
    if args.no_protect:
        return None
    if args.layer:
        layer = Path(args.layer)
        expected = "--layer expects a layer .zip or an unpacked layer directory"
        if layer.is_dir():
            return layer
        if not layer.exists():
            raise UsageError(f"{expected}; found nothing at {args.layer!r}")
        if not layer.is_file():
            raise UsageError(f"{expected}; {args.layer!r} is neither")
        if not zipfile.is_zipfile(layer):
            raise UsageError(
                f"{expected}; {args.layer!r} is a file but not a zip archive"
            )
        return layer
    if not (REPO_ROOT / "layer" / "palisade").is_dir():
        raise UsageError(
            "no source checkout next to palisade_sandbox; give the layer with "
            "--layer ZIP"
        )
    return "source"


def run(args: argparse.Namespace, out: Any = None, err: Any = None) -> int:
    """Run the invocations described by ``args``; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    code_dir = Path(args.code_dir)
    check_handler(args.handler, code_dir)
    check_limits(args.timeout, args.memory)
    if args.analyzer:
        check_analyzer_url(args.analyzer)
    if args.policy:
        check_policy(args.policy)
    user_env = parse_env(args.env)
    events = read_events(args.event, args.events)
    opt = _opt_for(args)

    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        files = {
            "batches": scratch / "batches.jsonl",
            "records": scratch / "records.jsonl",
            "spool": scratch / "spool",
        }
        analyzer_db = None
        if args.db:
            analyzer_db = stack.enter_context(_LocalAnalyzer(Path(args.db)))
            args.analyzer = analyzer_db.url
            args.analyzer_key = analyzer_db.key

        def extension_output(name: str, stream: str, line: str) -> None:
            # The function's lines are shown with its result; an extension only
            # prints when something is wrong, which the user must see at once.
            if name != "runtime":
                print(f"[{name} {stream}] {line}", file=err)

        box = Sandbox(
            args.handler,
            code_dir,
            opt_dir=opt,
            env={},
            timeout=args.timeout,
            memory_mb=args.memory,
            freeze=not args.no_freeze,
            on_log=extension_output,
        )
        stack.callback(box.shutdown)
        try:
            box.start()
        except (zipfile.BadZipFile, ValueError) as exc:
            if not args.layer:
                raise
            raise UsageError(f"--layer {args.layer}: cannot unpack: {exc}") from exc
        assert box.layout is not None
        env = protection_env(args, box.layout.opt, files) if opt is not None else {}
        env.update(user_env)
        box.set_env(env)

        results = [box.invoke(event) for event in events]
        box.shutdown()  # flushes the extension's sink
        records = collect_records(files["batches"], files["records"])
        if analyzer_db is not None:
            stored = [r for r in analyzer_db.results if r.status in (200, 202)]
            print(f"{PROG}: {len(stored)} batch(es) stored in {args.db}", file=err)

    if args.json:
        _print_json(results, records, out)
    else:
        _print_human(results, records, out, protected=opt is not None)
    return 0 if all(r.ok for r in results) else 1


def _print_json(
    results: Sequence[InvocationResult], records: Sequence[dict[str, Any]], out: Any
) -> None:
    by_id = {str(r.get("request_id")): r for r in records}
    for record in records:
        if record.get("request_id") == "init":
            print(json.dumps(record), file=out)
    for result in results:
        outcome = {
            "status": result.status,
            "payload": result.payload,
            "error": result.error,
            "duration_ms": round(result.duration_ms, 3),
            "cold_start": result.cold_start,
            "reset": result.reset,
            "reset_reason": result.reset_reason,
            "timed_out": result.timed_out,
        }
        record = dict(
            by_id.get(result.request_id)
            or {
                "request_id": result.request_id,
                "events": [],
            }
        )
        record["invocation"] = outcome
        print(json.dumps(record, default=str), file=out)


def _print_human(
    results: Sequence[InvocationResult],
    records: Sequence[dict[str, Any]],
    out: Any,
    protected: bool,
) -> None:
    by_id = {str(r.get("request_id")): r for r in records}
    for index, result in enumerate(results, 1):
        for line in result_lines(index, result):
            print(line, file=out)
        record = by_id.get(result.request_id)
        if record is not None:
            verdicts = Counter(e.get("verdict") for e in record.get("events", []))
            print(
                "    events: "
                + ", ".join(f"{verdicts.get(v, 0)} {v}" for v in VERDICT_ORDER),
                file=out,
            )
    print("", file=out)
    if not protected:
        print("Behaviour: not recorded (--no-protect)", file=out)
        return
    print("Behaviour (every invocation and init):", file=out)
    for line in behaviour_lines(records):
        print(line, file=out)


class _LocalAnalyzer:
    """A local analyzer on a SQLite file behind a loopback HTTP endpoint (``--db``).

    ``POST /v1/batches`` hands each signed batch to ``palisade_analyzer``'s
    ``Ingestor`` with a key made for this run, so the extension's http sink ships
    to it exactly as it would to a deployed analyzer.
    """

    def __init__(self, db: Path) -> None:
        self.db = db
        self.url = ""
        self.key_id = "palisade-invoke"
        self.secret = secrets.token_hex(24)
        self.results: list[Any] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        """``key_id:secret`` for ``PALISADE_ANALYZER_KEY``."""
        return f"{self.key_id}:{self.secret}"

    def __enter__(self) -> _LocalAnalyzer:
        if not self.db.parent.is_dir():
            raise UsageError(f"--db: no such directory {str(self.db.parent)!r}")
        try:
            from palisade_analyzer import Ingestor, KeyRing, SQLiteStore
        except ImportError as exc:
            raise UsageError(
                f"--db needs the analyzer package (palisade_analyzer): {exc}"
            ) from exc
        ring = KeyRing.from_document(
            {"keys": [{"id": self.key_id, "secret": self.secret, "functions": ["*"]}]}
        )
        ingestor = Ingestor(SQLiteStore(str(self.db)), ring)
        results = self.results

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/batches":
                    answer, code = {"error": "not_found", "message": self.path}, 404
                else:
                    result = ingestor.ingest(body, dict(self.headers.items()))
                    results.append(result)
                    answer, code = result.to_json(), result.status
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("analyzer %s", format % args)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-analyzer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``palisade invoke``.

    SIGINT and SIGTERM stop the run the same way: the sandbox shuts down, its
    processes and work directory are removed, one line says so, and the exit
    status is 130 or 143 (128 + the signal's number).
    """
    parser = build_parser()
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        return run(args)
    except UsageError as exc:
        for line in str(exc).splitlines() or [""]:
            print(f"{PROG}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
