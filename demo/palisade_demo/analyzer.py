"""The demo's analyzer: started as a service, read through its store.

The analyzer runs in its own process with a fresh SQLite file under the demo's
output folder, a signing key made for the run, and learning thresholds scaled to a
demo that lasts a minute instead of days (``DEMO_LEARNING``). The functions'
extensions ship to it over signed HTTP; the demo reads every figure back from the
same SQLite file through the analyzer's own store class, and asks the analyzer's
``policy suggest`` for the proposed policies.

The service is ``palisade analyzer serve --port 0`` in a child process; it prints
the URL it bound.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .services import Child

logger = logging.getLogger(__name__)

# Learning compressed for a one-minute demo: a profile can become stable after
# this many invocations and this many seconds without a new behaviour.
DEMO_LEARNING = {
    "PALISADE_ANALYZER_LEARN_MIN_INVOCATIONS": "20",
    "PALISADE_ANALYZER_LEARN_QUIET_SECONDS": "2",
}
KEY_ID = "demo"


@dataclass
class Window:
    """What the analyzer stored about one group of invocations."""

    invocations: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    flagged: int = 0
    blocked: int = 0
    blocked_rules: list[str] = field(default_factory=list)
    blocked_targets: list[str] = field(default_factory=list)


class AnalyzerHandle:
    """A running analyzer and read access to its store."""

    def __init__(self, child: Child, db: Path, secret: str) -> None:
        self.child = child
        self.db = db
        self.secret = secret
        self.url = child.url
        self.settings = {
            k.removeprefix("PALISADE_ANALYZER_").lower(): v
            for k, v in DEMO_LEARNING.items()
        }
        self.quiet_seconds = float(
            DEMO_LEARNING["PALISADE_ANALYZER_LEARN_QUIET_SECONDS"]
        )
        self._store: Any = None

    # ------------------------------------------------------------- service

    def stop(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self.child.stop()

    def function_env(self, function: str) -> dict[str, str]:
        """What a protected function's extension needs to ship here."""
        return {
            "PALISADE_SINK": "http",
            "PALISADE_ANALYZER_URL": self.url,
            "PALISADE_ANALYZER_KEY": f"{KEY_ID}:{self.secret}",
        }

    @property
    def store(self) -> Any:
        if self._store is None:
            from palisade_analyzer.sqlite_store import SQLiteStore

            self._store = SQLiteStore(str(self.db))
        return self._store

    # ------------------------------------------------------------- reading

    def version(self, function: str) -> dict[str, Any] | None:
        versions = self.store.versions(function)
        if not versions:
            return None
        info = max(versions, key=lambda v: v.last_seen)
        result: dict[str, Any] = info.to_json()
        return result

    def state(self, function: str) -> str:
        info = self.version(function)
        return str(info["state"]) if info else "none"

    def signature_count(self, function: str) -> int:
        info = self.version(function)
        if info is None:
            return 0
        return len(self.store.signatures(function, info["version"]))

    def stored_ids(self, function: str, since: float | None = None) -> set[str]:
        return {i.request_id for i in self.store.invocations(function, since=since)}

    def missing(self, function: str, request_ids: list[str]) -> list[str]:
        stored = self.stored_ids(function)
        return [r for r in request_ids if r not in stored]

    def await_requests(
        self, function: str, request_ids: list[str], timeout: float
    ) -> bool:
        """Wait (bounded) until every invocation's record is in the store."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.missing(function, request_ids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def window(
        self,
        function: str,
        started: float,
        ended: float,
        request_ids: list[str],
        include_init: bool = False,
    ) -> Window:
        """Alerts, verdicts and invocations of these requests (and their init).

        An alert belongs to the requests when its latest evidence (or its first
        evidence) names one of them; an ``init`` record belongs to them when
        ``include_init`` is set and it started inside [started, ended] (the init
        of the environment that served them).
        """
        ids = set(request_ids)

        def ours(request_id: Any, ts: float) -> bool:
            if request_id in ids:
                return True
            return include_init and request_id == "init" and started <= ts <= ended

        view = Window()
        for rec in self.store.invocations(function, since=started):
            if rec.request_id in ids:
                view.invocations += 1
        for event in self.store.trail(function, since=started):
            if not ours(event.request_id, event.ts):
                continue
            if event.verdict == "alerted":
                view.flagged += 1
            elif event.verdict == "blocked":
                view.blocked += 1
                if event.rule not in view.blocked_rules:
                    view.blocked_rules.append(event.rule)
                view.blocked_targets.append(f"{event.kind} {event.op} {event.target}")
        for alert in self.store.alerts(since=started, function=function):
            doc = alert.to_json()
            evidence = [doc.get("last_evidence") or {}, *(doc.get("evidence") or [])]
            if any(ours(e.get("request_id"), float(e.get("ts", 0))) for e in evidence):
                view.alerts.append(doc)
        return view

    # ------------------------------------------------------------ policies

    def suggest(self, function: str, stage: str, output: Path) -> dict[str, Any]:
        """The analyzer's proposed policy, from ``palisade policy suggest``."""
        env = {**os.environ, **DEMO_LEARNING}
        argv = [sys.executable, "-m", "palisade_cli.main", "policy", "suggest"]
        argv += [function, "--db", str(self.db), "--stage", stage]
        argv += ["--output", str(output)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        if done.returncode != 0:
            raise RuntimeError(
                f"expected {' '.join(argv[3:])} to write a policy, it exited "
                f"{done.returncode}: {done.stderr.strip()[-500:]}"
            )
        doc: dict[str, Any] = json.loads(output.read_text())
        return doc


def start_analyzer(out: Path, work: Path) -> AnalyzerHandle:
    """Start the analyzer on a fresh database under ``out``."""
    db = out / "analyzer.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    secret = secrets.token_hex(24)
    keys = work / "analyzer-keys.json"
    keys.write_text(
        json.dumps({"keys": [{"id": KEY_ID, "secret": secret, "functions": ["*"]}]})
    )
    keys.chmod(0o600)
    env = {
        **os.environ,
        "PALISADE_ANALYZER_DB": str(db),
        "PALISADE_ANALYZER_KEYS": str(keys),
        **DEMO_LEARNING,
    }
    argv = [sys.executable, "-m", "palisade_cli.main", "analyzer", "serve"]
    argv += ["--db", str(db), "--keys", str(keys), "--host", "127.0.0.1"]
    argv += ["--port", "0"]
    child = Child(
        "analyzer", argv, out / "logs" / "analyzer.log", env, stop_signal=True
    )
    child.start()
    return AnalyzerHandle(child, db, secret)
