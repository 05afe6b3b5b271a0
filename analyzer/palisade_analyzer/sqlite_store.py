"""The embedded store: one SQLite file in WAL mode.

Each batch is applied in one ``BEGIN IMMEDIATE`` transaction (the batch id is
inserted first, so a duplicate changes nothing and a failure anywhere rolls the
whole batch back). Counters are aggregated per batch in Python and written with
``executemany`` upserts, never one statement per event. Readers use their own
connection per thread and see committed batches only; several reader processes
and one writer process may share the file.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from palisade.errors import ConfigError

from .model import (
    Alert,
    BatchDelta,
    Invocation,
    ProfileContext,
    SigStats,
    TrailEvent,
    VersionInfo,
)
from .store import ApplyResult, profile_context

log = logging.getLogger(__name__)

_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    function TEXT NOT NULL, batch_id TEXT NOT NULL, received_at REAL NOT NULL,
    records INTEGER NOT NULL, PRIMARY KEY (function, batch_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invocations (
    function TEXT NOT NULL, version TEXT NOT NULL, request_id TEXT NOT NULL,
    batch_id TEXT NOT NULL, started_at REAL NOT NULL, duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL, cold_start INTEGER NOT NULL, events INTEGER NOT NULL,
    dropped INTEGER NOT NULL, event_digest TEXT NOT NULL,
    timeline TEXT NOT NULL, signatures TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS invocations_by_request
    ON invocations (function, request_id);
CREATE INDEX IF NOT EXISTS invocations_by_time ON invocations (function, started_at);
CREATE TABLE IF NOT EXISTS versions (
    function TEXT NOT NULL, version TEXT NOT NULL, invocations INTEGER NOT NULL,
    events INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    last_new_at REAL, stable_at REAL, prior TEXT, inits INTEGER NOT NULL,
    cold_starts INTEGER NOT NULL,
    PRIMARY KEY (function, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sigs (
    function TEXT NOT NULL, version TEXT NOT NULL, signature TEXT NOT NULL,
    kind TEXT NOT NULL, sensitivity TEXT NOT NULL, count INTEGER NOT NULL,
    invocations INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    cold INTEGER NOT NULL,
    PRIMARY KEY (function, version, signature)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sig_packages (
    function TEXT NOT NULL, version TEXT NOT NULL, signature TEXT NOT NULL,
    package TEXT NOT NULL,
    PRIMARY KEY (function, version, signature, package)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rates (
    function TEXT NOT NULL, version TEXT NOT NULL, metric TEXT NOT NULL,
    bucket INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (function, version, metric, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    function TEXT NOT NULL, version TEXT NOT NULL, signature TEXT NOT NULL,
    last_seen REAL NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (function, version, signature)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (last_seen);
CREATE TABLE IF NOT EXISTS stats (
    name TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
"""

_MAX_NULLABLE = (
    "CASE WHEN excluded.{c} IS NULL THEN {c} "
    "WHEN {c} IS NULL OR excluded.{c} > {c} THEN excluded.{c} ELSE {c} END"
)

UPSERT_VERSION = f"""
INSERT INTO versions (function, version, invocations, events, first_seen,
    last_seen, last_new_at, stable_at, prior, inits, cold_starts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (function, version) DO UPDATE SET
    invocations = invocations + excluded.invocations,
    inits = inits + excluded.inits,
    cold_starts = cold_starts + excluded.cold_starts,
    events = events + excluded.events,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen),
    last_new_at = {_MAX_NULLABLE.format(c="last_new_at")},
    stable_at = coalesce(stable_at, excluded.stable_at),
    prior = coalesce(prior, excluded.prior)
"""

UPSERT_SIG = """
INSERT INTO sigs (function, version, signature, kind, sensitivity, count,
    invocations, first_seen, last_seen, cold)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (function, version, signature) DO UPDATE SET
    count = count + excluded.count,
    cold = cold + excluded.cold,
    invocations = invocations + excluded.invocations,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)
"""

UPSERT_STAT = """
INSERT INTO stats VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET
    count = count + excluded.count
"""

UPSERT_RATE = """
INSERT INTO rates (function, version, metric, bucket, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (function, version, metric, bucket) DO UPDATE SET
    count = count + excluded.count
"""


def _version_row(row: tuple[Any, ...]) -> VersionInfo:
    return VersionInfo(*row)


def _sig_row(row: tuple[Any, ...], packages: list[str]) -> SigStats:
    f, v, s, kind, sensitivity, count, invocations, first, last, cold = row
    return SigStats(
        f, v, s, kind, sensitivity, count, invocations, first, last, packages, cold
    )


class SQLiteStore:
    """The :class:`~palisade_analyzer.store.Store` on one SQLite file."""

    def __init__(self, path: str):
        """Open (or create) the database at ``path``, creating its folder.

        Raises:
            ConfigError: ``path`` is not a SQLite database (or cannot be opened).
        """
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            conn = self._conn()
            conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ConfigError(
                f"cannot open {path!r} as the analyzer's SQLite database (SQLite "
                f"says: {exc}): pass --db with an analyzer database, or a new file "
                "name to start one"
            ) from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- ingest -------------------------------------------------------------------

    def has_batch(self, function: str, batch_id: str) -> bool:
        """Whether the batch was applied already."""
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM batches WHERE function = ? AND batch_id = ?",
                (function, batch_id),
            )
            .fetchone()
        )
        return row is not None

    def load_context(
        self, function: str, version: str, signatures: Iterable[str]
    ) -> ProfileContext:
        """The version, its prior and the named signatures' counters (and the rate
        histograms once the version is stable)."""
        conn = self._conn()
        info = self.version(function, version)
        prior_name = info.prior if info else None
        if info is None:
            row = conn.execute(
                "SELECT version FROM versions WHERE function = ? AND version != ? "
                "ORDER BY last_seen DESC LIMIT 1",
                (function, version),
            ).fetchone()
            prior_name = row[0] if row else None
        prior = self.version(function, prior_name) if prior_name else None
        return profile_context(
            function,
            version,
            info,
            prior,
            signatures,
            sigs_named=self._sigs_named,
            rates=self.rates,
        )

    def _sigs_named(
        self, function: str, version: str, names: list[str]
    ) -> dict[str, SigStats]:
        conn = self._conn()
        found: dict[str, SigStats] = {}
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                "SELECT function, version, signature, kind, sensitivity, count, "
                "invocations, first_seen, last_seen, cold FROM sigs WHERE function = ? "
                f"AND version = ? AND signature IN ({marks})",
                (function, version, *chunk),
            ).fetchall()
            for row in rows:
                found[row[2]] = _sig_row(row, [])
        return found

    def apply(self, delta: BatchDelta) -> ApplyResult:
        """Apply the batch in one transaction; a duplicate changes nothing."""
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?)",
                (
                    delta.function,
                    delta.batch_id,
                    delta.received_at,
                    len(delta.invocations),
                ),
            )
            if cur.rowcount == 0:
                return ApplyResult(stored=False)
            self._insert_trail(conn, delta)
            self._upsert_profile(conn, delta)
            new_alerts = self._upsert_alerts(conn, delta)
            stats = dict(delta.stats)
            if new_alerts:
                stats["alerts.new"] = len(new_alerts)
            conn.executemany(UPSERT_STAT, list(stats.items()))
        return ApplyResult(stored=True, new_alerts=new_alerts)

    def _insert_trail(self, conn: sqlite3.Connection, delta: BatchDelta) -> None:
        # One row per invocation, its events as one JSON array: the trail is read
        # per invocation, and one encode per record is far cheaper than per event.
        dumps = _COMPACT.encode
        conn.executemany(
            "INSERT INTO invocations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i.function,
                    i.version,
                    i.request_id,
                    i.batch_id,
                    i.started_at,
                    i.duration_ms,
                    i.outcome,
                    int(i.cold_start),
                    i.events,
                    i.dropped,
                    dumps(i.event_digest),
                    dumps(i.timeline),
                    dumps(i.signatures),
                )
                for i in delta.invocations
            ],
        )

    def _upsert_profile(self, conn: sqlite3.Connection, delta: BatchDelta) -> None:
        conn.executemany(
            UPSERT_VERSION,
            [
                (
                    f,
                    v,
                    d.invocations,
                    d.events,
                    d.first_seen,
                    d.last_seen,
                    d.last_new_at,
                    d.stable_at,
                    d.prior,
                    d.inits,
                    d.cold_starts,
                )
                for (f, v), d in delta.versions.items()
            ],
        )
        conn.executemany(
            UPSERT_SIG,
            [
                (
                    f,
                    v,
                    s,
                    d.kind,
                    d.sensitivity,
                    d.count,
                    d.invocations,
                    d.first_seen,
                    d.last_seen,
                    d.cold,
                )
                for (f, v, s), d in delta.sigs.items()
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO sig_packages VALUES (?, ?, ?, ?)",
            [
                (f, v, s, package)
                for (f, v, s), d in delta.sigs.items()
                for package in d.packages
            ],
        )
        conn.executemany(
            UPSERT_RATE,
            [
                (f, v, metric, bucket, n)
                for (f, v), d in delta.versions.items()
                for metric, hist in d.rates.items()
                for bucket, n in hist.items()
            ],
        )

    def _upsert_alerts(
        self, conn: sqlite3.Connection, delta: BatchDelta
    ) -> list[Alert]:
        new: list[Alert] = []
        rows = []
        for (f, v, s), alert in delta.alerts.items():
            row = conn.execute(
                "SELECT doc FROM alerts WHERE function = ? AND version = ? "
                "AND signature = ?",
                (f, v, s),
            ).fetchone()
            if row is None:
                merged = alert
                new.append(alert)
            else:
                merged = Alert.from_json(json.loads(row[0]))
                merged.merge(alert)
            rows.append((f, v, s, merged.last_seen, json.dumps(merged.to_json())))
        if rows:
            conn.executemany(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?)", rows
            )
        return new

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name``."""
        with self._transaction() as conn:
            conn.execute(UPSERT_STAT, (name, n))

    def stats(self) -> dict[str, int]:
        """Every counter."""
        rows = self._conn().execute("SELECT name, count FROM stats").fetchall()
        return {name: int(count) for name, count in rows}

    # -- queries ------------------------------------------------------------------

    def functions(self) -> list[str]:
        """Functions with a profile, sorted."""
        rows = self._conn().execute(
            "SELECT DISTINCT function FROM versions ORDER BY function"
        )
        return [row[0] for row in rows]

    def versions(self, function: str) -> list[VersionInfo]:
        """The function's versions, oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM versions WHERE function = ? ORDER BY first_seen, version",
            (function,),
        )
        return [_version_row(row) for row in rows]

    def version(self, function: str, version: str) -> VersionInfo | None:
        """One version."""
        row = (
            self._conn()
            .execute(
                "SELECT * FROM versions WHERE function = ? AND version = ?",
                (function, version),
            )
            .fetchone()
        )
        return _version_row(row) if row else None

    def signatures(self, function: str, version: str) -> list[SigStats]:
        """All signatures of the version, with their packages."""
        conn = self._conn()
        packages: dict[str, list[str]] = {}
        for sig, package in conn.execute(
            "SELECT signature, package FROM sig_packages WHERE function = ? "
            "AND version = ? ORDER BY package",
            (function, version),
        ):
            packages.setdefault(sig, []).append(package)
        rows = conn.execute(
            "SELECT function, version, signature, kind, sensitivity, count, "
            "invocations, first_seen, last_seen, cold FROM sigs WHERE function = ? "
            "AND version = ? ORDER BY signature",
            (function, version),
        )
        return [_sig_row(row, packages.get(row[2], [])) for row in rows]

    def rates(self, function: str, version: str) -> dict[str, dict[int, int]]:
        """Rate histograms of the version."""
        out: dict[str, dict[int, int]] = {}
        for metric, bucket, n in self._conn().execute(
            "SELECT metric, bucket, count FROM rates WHERE function = ? "
            "AND version = ?",
            (function, version),
        ):
            out.setdefault(metric, {})[int(bucket)] = int(n)
        return out

    def alerts(
        self, since: float | None = None, function: str | None = None
    ) -> list[Alert]:
        """Alerts last seen at or after ``since``, most recent first."""
        sql = "SELECT doc FROM alerts WHERE last_seen >= ?"
        args: list[Any] = [since if since is not None else float("-inf")]
        if function is not None:
            sql += " AND function = ?"
            args.append(function)
        rows = self._conn().execute(sql + " ORDER BY last_seen DESC", args)
        return [Alert.from_json(json.loads(row[0])) for row in rows]

    def _invocation_rows(
        self,
        function: str,
        request_id: str | None,
        since: float | None,
        with_timeline: bool,
    ) -> list[Invocation]:
        columns = (
            "function, version, request_id, batch_id, started_at, duration_ms, "
            "outcome, cold_start, events, dropped, event_digest"
        )
        if with_timeline:
            columns += ", timeline, signatures"
        sql = f"SELECT {columns} FROM invocations WHERE function = ?"
        args: list[Any] = [function]
        if request_id is not None:
            sql += " AND request_id = ?"
            args.append(request_id)
        if since is not None:
            # An invocation lasts at most 15 minutes: earlier starts cannot matter.
            sql += " AND started_at >= ?"
            args.append(since - (900 if with_timeline else 0))
        rows = self._conn().execute(sql + " ORDER BY started_at, rowid", args)
        return [
            Invocation(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6],
                bool(row[7]),
                row[8],
                row[9],
                json.loads(row[10]),
                timeline=json.loads(row[11]) if with_timeline else [],
                signatures=json.loads(row[12]) if with_timeline else [],
            )
            for row in rows
        ]

    def invocations(
        self,
        function: str,
        request_id: str | None = None,
        since: float | None = None,
    ) -> list[Invocation]:
        """Invocation summaries, oldest first."""
        return self._invocation_rows(function, request_id, since, False)

    def trail(
        self,
        function: str,
        request_id: str | None = None,
        since: float | None = None,
    ) -> list[TrailEvent]:
        """Events in time order."""
        events = [
            event
            for inv in self._invocation_rows(function, request_id, since, True)
            for event in inv.trail_events()
            if since is None or event.ts >= since
        ]
        events.sort(key=lambda e: (e.ts, e.seq))
        return events
