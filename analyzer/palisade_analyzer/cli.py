"""The analyzer's commands: ``palisade analyzer serve``, ``profile``, ``alerts``,
``trail`` and ``policy suggest``.

Each ``*_main`` takes argv (the arguments after its subcommand) and returns an
exit status: 0 done, 1 nothing found or a runtime failure, 2 bad arguments (one
line on stderr). Every command works on ``--db PATH`` (default
``./.palisade/analyzer.db`` or ``PALISADE_ANALYZER_DB``) or on the AWS backend
(``--backend aws --table-prefix P --bucket B``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from palisade.errors import ConfigError

from .model import utc
from .ocsf import alert_to_ocsf
from .schemas import first_error, validator
from .settings import DEFAULT_DB, Settings, load_settings
from .signing import KeyRing
from .sinks import Dispatcher, sink_from_spec
from .store import Store
from .suggest import STAGES, suggest_policy
from .views import parse_since, profile_view, trail_view

DEFAULT_PORT = 8700


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser(prog: str, description: str) -> _Parser:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--db", help="SQLite file (default ./.palisade/analyzer.db)")
    parser.add_argument("--backend", choices=("sqlite", "aws"), help="storage backend")
    parser.add_argument("--table-prefix", help="DynamoDB table prefix (aws backend)")
    parser.add_argument("--bucket", help="S3 trail bucket (aws backend)")
    parser.add_argument("--region", help="AWS region (aws backend)")
    parser.add_argument("--endpoint-url", help="AWS endpoint override (aws backend)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        db=args.db,
        backend=args.backend,
        table_prefix=args.table_prefix,
        bucket=args.bucket,
    )


def open_store(args: argparse.Namespace, settings: Settings, create: bool) -> Store:
    """The store the arguments name.

    Raises:
        _UsageError: a read command names a SQLite file that does not exist.
    """
    if settings.backend == "aws":
        from .aws_store import AWSStore

        try:
            store = AWSStore(
                table_prefix=settings.table_prefix,
                bucket=settings.bucket,
                region=args.region,
                endpoint_url=args.endpoint_url,
            )
        except ValueError as exc:
            raise _UsageError(str(exc)) from exc
        return store
    from .sqlite_store import SQLiteStore

    if not create and not os.path.exists(settings.db):
        raise _UsageError(
            f"no analyzer database at {settings.db!r}: pass --db PATH (or set "
            "PALISADE_ANALYZER_DB), or start `palisade analyzer serve` first"
        )
    folder = os.path.dirname(os.path.abspath(settings.db))
    # Only the default location's folder is made: a mistyped --db should not
    # silently grow a directory tree and an empty database.
    if create and settings.db != DEFAULT_DB and not os.path.isdir(folder):
        raise _UsageError(
            f"the folder of the database {settings.db!r} does not exist ({folder}): "
            "create it first, or pass --db in an existing folder"
        )
    return SQLiteStore(settings.db)


def _run(prog: str, func: Any, argv: Sequence[str]) -> int:
    try:
        return int(func(list(argv)))
    except _UsageError as exc:
        print(f"palisade {prog}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"palisade {prog}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return utc(ts)


def _since(text: str | None) -> float | None:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise _UsageError(f"--since: {exc}") from exc


# -- palisade analyzer serve ---------------------------------------------------------


def _serve(argv: list[str]) -> int:
    parser = _parser("analyzer serve", "Run the analyzer's HTTP service.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (0: any; {DEFAULT_PORT})"
    )
    parser.add_argument("--keys", help="keys JSON file (or PALISADE_ANALYZER_KEYS)")
    parser.add_argument(
        "--sink", action="append", default=[], help="alert sink (repeatable)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise _UsageError(f"--port {args.port} is not 0..65535")
    settings = _settings(args)
    keys = KeyRing.load(args.keys if args.keys is not None else settings.keys)
    try:
        sinks = [sink_from_spec(s) for s in (*settings.sinks, *args.sink)]
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc

    from .ingest import Ingestor
    from .server import AnalyzerServer

    store = open_store(args, settings, create=True)
    dispatcher = Dispatcher(sinks, settings.alert_format)
    ingestor = Ingestor(store, keys, settings, on_alert=dispatcher)
    try:
        server = AnalyzerServer(ingestor, store, settings, args.host, args.port)
    except OSError as exc:
        store.close()
        print(
            f"palisade analyzer: cannot listen on {args.host}:{args.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    if not len(keys):
        print(
            "palisade analyzer: no signing keys configured (--keys or "
            "PALISADE_ANALYZER_KEYS): every batch will be refused with 401",
            file=sys.stderr,
        )

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {
        sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    print(f"palisade analyzer listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
        ingestor.close()
    print("palisade analyzer stopped", flush=True)
    return 0


def analyzer_main(argv: list[str]) -> int:
    """``palisade analyzer serve ...``."""
    if not argv:
        print("palisade analyzer: expected a subcommand: serve", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(
            "usage: palisade analyzer serve [--db PATH] [--host H] [--port N] "
            "[--keys FILE] [--sink SPEC]"
        )
        return 0
    if argv[0] != "serve":
        print(
            f"palisade analyzer: unknown subcommand {argv[0]!r}; expected serve",
            file=sys.stderr,
        )
        return 2
    return _run("analyzer serve", _serve, argv[1:])


# -- palisade profile ----------------------------------------------------------------


def _profile(argv: list[str]) -> int:
    parser = _parser("profile", "Show a function's learned profile.")
    parser.add_argument("function")
    parser.add_argument("--version", dest="code_version", help="code version")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    settings = _settings(args)
    store = open_store(args, settings, create=False)
    try:
        view = profile_view(store, args.function, args.code_version, settings)
    finally:
        store.close()
    if view is None:
        what = f" version {args.code_version!r}" if args.code_version else ""
        print(
            f"palisade profile: no profile for {args.function!r}{what}", file=sys.stderr
        )
        return 1
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
        return 0
    print(
        f"{view['function']} version {view['version']}: {view['state']}, "
        f"{view['invocations']} invocation(s), {view['events']} event(s), "
        f"{_iso(view['first_seen'])} .. {_iso(view['last_seen'])}"
    )
    if view["prior"]:
        print(f"  prior version: {view['prior']}")
    for metric, rate in view["rates"].items():
        print(f"  rate {metric}: median {rate['median']:g}, MAD {rate['mad']:g}")
    print(f"  {'count':>7} {'invoc':>6}  {'class':<14} signature  [packages]")
    for sig in view["signatures"]:
        flag = "" if sig["live"] else " (decayed)"
        flag += "" if sig["baseline"] or not view["stable_at"] else " (after learning)"
        print(
            f"  {sig['count']:>7} {sig['invocations']:>6}  {sig['sensitivity']:<14} "
            f"{sig['signature']}  [{', '.join(sig['packages'])}]{flag}"
        )
    return 0


def profile_main(argv: list[str]) -> int:
    """``palisade profile FUNCTION [--version V] [--json]``."""
    return _run("profile", _profile, argv)


# -- palisade alerts -----------------------------------------------------------------


def _alerts(argv: list[str]) -> int:
    parser = _parser("alerts", "List alerts, most recent first.")
    parser.add_argument("--since", help="unix seconds, ISO 8601, or 15m / 2h / 7d")
    parser.add_argument("--function", help="only this function")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--format", choices=("native", "ocsf"), default="native")
    args = parser.parse_args(argv)
    since = _since(args.since)
    settings = _settings(args)
    store = open_store(args, settings, create=False)
    try:
        alerts = store.alerts(since=since, function=args.function)
    finally:
        store.close()
    for alert in alerts:
        if args.json or args.format == "ocsf":
            doc = alert_to_ocsf(alert) if args.format == "ocsf" else alert.to_json()
            print(json.dumps(doc, sort_keys=True))
            continue
        print(
            f"{_iso(alert.last_seen)} {alert.severity.upper():<8} {alert.function} "
            f"v{alert.version} {alert.signature} x{alert.count} "
            f"(first {_iso(alert.first_seen)}; {'; '.join(alert.reasons)}) "
            f"id {alert.id}"
        )
    return 0


def alerts_main(argv: list[str]) -> int:
    """``palisade alerts [--since DURATION|ISO] [--function F] [--json]``."""
    return _run("alerts", _alerts, argv)


# -- palisade trail ------------------------------------------------------------------


def _trail(argv: list[str]) -> int:
    parser = _parser("trail", "What a function's invocations did, in order.")
    parser.add_argument("function")
    parser.add_argument("--request-id", help="one invocation")
    parser.add_argument("--since", help="unix seconds, ISO 8601, or 15m / 2h / 7d")
    parser.add_argument(
        "--limit", type=int, default=20, help="most recent invocations (20)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    since = _since(args.since)
    if args.limit < 1:
        raise _UsageError(f"--limit must be at least 1, not {args.limit}")
    settings = _settings(args)
    store = open_store(args, settings, create=False)
    try:
        view = trail_view(store, args.function, args.request_id, since, args.limit)
    finally:
        store.close()
    if not view["invocations"]:
        what = f" request {args.request_id!r}" if args.request_id else ""
        print(
            f"palisade trail: nothing recorded for {args.function!r}{what}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True, default=str))
        return 0
    for inv in view["invocations"]:
        print(
            f"request {inv['request_id']} version {inv['version']} at "
            f"{_iso(inv['started_at'])}: {inv['outcome'] or '-'}, "
            f"{inv['duration_ms']:g} ms, {inv['events']} event(s)"
            + (" (cold start)" if inv["cold_start"] else "")
        )
        start = inv["started_at"]
        for ev in inv["timeline"]:
            argv_ = ev["detail"].get("argv")
            shown = (
                " ".join(map(str, argv_)) if isinstance(argv_, list) else ev["target"]
            )
            print(
                f"  +{(ev['ts'] - start) * 1000:8.1f}ms  {ev['kind']:<7} {ev['op']:<8} "
                f"{shown}  [{ev['module']}] {ev['verdict']} ({ev['rule']})"
            )
    return 0


def trail_main(argv: list[str]) -> int:
    """``palisade trail FUNCTION [--request-id ID] [--since T] [--limit N]``."""
    return _run("trail", _trail, argv)


# -- palisade policy suggest ---------------------------------------------------------


def _suggest(argv: list[str]) -> int:
    parser = _parser("policy suggest", "Propose an allowlist from a learned profile.")
    parser.add_argument("function")
    parser.add_argument("--stage", choices=STAGES, default="full")
    parser.add_argument("--min-invocations", type=int, default=3)
    parser.add_argument("--version", dest="code_version", help="code version")
    parser.add_argument("--output", help="write the policy here (default stdout)")
    args = parser.parse_args(argv)
    if args.min_invocations < 1:
        raise _UsageError(
            f"--min-invocations must be at least 1, not {args.min_invocations}"
        )
    settings = _settings(args)
    store = open_store(args, settings, create=False)
    try:
        doc = suggest_policy(
            store,
            args.function,
            version=args.code_version,
            stage=args.stage,
            min_invocations=args.min_invocations,
            settings=settings,
        )
    except LookupError as exc:
        print(f"palisade policy suggest: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    problem = first_error(validator("policy.schema.json"), doc)
    if problem is not None:
        print(
            f"palisade policy suggest: the proposal does not match the policy "
            f"schema ({problem}); this is a bug in the analyzer",
            file=sys.stderr,
        )
        return 1
    if not _gate_check(doc, args.stage, args.min_invocations):
        return 1
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        rules = len(doc["evidence"]["rules"])
        print(f"wrote {rules} rule(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _gate_check(doc: dict[str, Any], stage: str, min_invocations: int) -> bool:
    """Warn about behaviours the gate left out; False to refuse the proposal.

    A blocking stage (``full``, ``block-high-risk``) without a single allow rule
    while the profile holds behaviours would block everything the function does,
    so it is refused rather than written.
    """
    evidence = doc["evidence"]
    excluded = evidence["excluded"]
    few = [e for e in excluded if e["reason"].startswith("seen in ")]
    prog = "palisade policy suggest"
    kept = {rule["signature"] for rule in evidence["rules"].values()}
    if few:
        print(
            f"{prog}: warning: {len(few)} of {len(excluded) + len(kept)} "
            f"learned behaviour(s) left out: seen in fewer than {min_invocations} "
            f"invocation(s) (the profile has {evidence['invocations']}); lower "
            "--min-invocations or let the function run longer",
            file=sys.stderr,
        )
    if excluded and not evidence["rules"] and stage in ("full", "block-high-risk"):
        print(
            f"{prog}: refusing stage {stage}: every one of the {len(excluded)} "
            "learned behaviour(s) was left out (see evidence.excluded with "
            "--stage monitor), so the policy would block all the function does; "
            "nothing was written",
            file=sys.stderr,
        )
        return False
    return True


def suggest_main(argv: list[str]) -> int:
    """``palisade policy suggest FUNCTION --db PATH [--stage S] ...``."""
    return _run("policy suggest", _suggest, argv)
