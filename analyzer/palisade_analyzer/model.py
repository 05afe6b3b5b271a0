"""The analyzer's data: profile counters, alerts, trail rows and batch deltas.

Every counter merges: ``count``, ``invocations`` and histogram buckets add,
``first_seen`` takes the minimum, ``last_seen`` the maximum and ``packages`` the
union, so the result is the same whatever the order and partition of batches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "low", "medium", "high", "critical")


def utc(ts: float, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    """A unix time as UTC text; out-of-range times are shown as the number."""
    try:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return str(ts)


def alert_id(function: str, version: str, signature: str) -> str:
    """The stable id of the alert for one (function, version, signature)."""
    text = f"{function}\x00{version}\x00{signature}".encode()
    return hashlib.sha256(text).hexdigest()[:20]


@dataclass
class SigDelta:
    """What one batch adds to one signature's counters."""

    kind: str
    sensitivity: str
    count: int = 0
    invocations: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    packages: set[str] = field(default_factory=set)
    # Invocations among ``invocations`` that were cold starts (or INIT).
    cold: int = 0

    def add(self, ts: float, package: str) -> None:
        """Count one more event at ``ts`` made by ``package``."""
        self.count += 1
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        self.packages.add(package)


@dataclass
class SigStats:
    """A signature's learned counters in one (function, version) profile."""

    function: str
    version: str
    signature: str
    kind: str
    sensitivity: str
    count: int
    invocations: int
    first_seen: float
    last_seen: float
    packages: list[str]
    cold: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "signature": self.signature,
            "kind": self.kind,
            "sensitivity": self.sensitivity,
            "count": self.count,
            "invocations": self.invocations,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "packages": sorted(self.packages),
            "cold_invocations": self.cold,
        }


@dataclass
class VersionDelta:
    """What one batch adds to one (function, version)."""

    invocations: int = 0
    events: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    rates: dict[str, dict[int, int]] = field(default_factory=dict)
    inits: int = 0
    cold_starts: int = 0
    # Set-once fields, written only where still empty.
    last_new_at: float | None = None
    prior: str | None = None
    stable_at: float | None = None


@dataclass
class VersionInfo:
    """A (function, version) profile's own counters and learning state."""

    function: str
    version: str
    invocations: int
    events: int
    first_seen: float
    last_seen: float
    last_new_at: float | None
    stable_at: float | None
    prior: str | None
    inits: int = 0
    cold_starts: int = 0

    @property
    def sandboxes(self) -> int:
        """Execution environments seen: INIT records, else cold-start invocations."""
        return max(self.inits, self.cold_starts)

    @property
    def state(self) -> str:
        """``stable``, or ``relearning`` (with a prior version) or ``learning``."""
        if self.stable_at is not None:
            return "stable"
        return "relearning" if self.prior else "learning"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "function": self.function,
            "version": self.version,
            "state": self.state,
            "invocations": self.invocations,
            "events": self.events,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_new_at": self.last_new_at,
            "stable_at": self.stable_at,
            "prior": self.prior,
            "inits": self.inits,
            "cold_starts": self.cold_starts,
        }


@dataclass
class Alert:
    """One deduplicated alert: a (function, version, signature) and its history."""

    function: str
    version: str
    signature: str
    kind: str
    sensitivity: str
    severity: str
    score: float
    newness: str
    reasons: list[str]
    count: int
    first_seen: float
    last_seen: float
    evidence: list[dict[str, Any]]
    last_evidence: dict[str, Any]
    state: str

    @property
    def id(self) -> str:
        """The alert's stable id."""
        return alert_id(self.function, self.version, self.signature)

    def to_json(self) -> dict[str, Any]:
        """The native JSON form (see docs/analyzer.md)."""
        return {
            "schema": "palisade.alert/1",
            "id": self.id,
            "function": self.function,
            "version": self.version,
            "signature": self.signature,
            "kind": self.kind,
            "sensitivity": self.sensitivity,
            "severity": self.severity,
            "score": round(self.score, 3),
            "newness": self.newness,
            "reasons": list(self.reasons),
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "profile_state": self.state,
            "evidence": list(self.evidence),
            "last_evidence": self.last_evidence,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Alert:
        """The inverse of :meth:`to_json`."""
        return cls(
            function=doc["function"],
            version=doc["version"],
            signature=doc["signature"],
            kind=doc["kind"],
            sensitivity=doc["sensitivity"],
            severity=doc["severity"],
            score=float(doc["score"]),
            newness=doc["newness"],
            reasons=list(doc["reasons"]),
            count=int(doc["count"]),
            first_seen=float(doc["first_seen"]),
            last_seen=float(doc["last_seen"]),
            evidence=list(doc["evidence"]),
            last_evidence=dict(doc["last_evidence"]),
            state=doc["profile_state"],
        )

    def merge(self, other: Alert) -> None:
        """Fold a later occurrence into this alert."""
        self.count += other.count
        if other.last_seen >= self.last_seen:
            self.last_evidence = other.last_evidence
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        if SEVERITIES.index(other.severity) > SEVERITIES.index(self.severity):
            self.severity = other.severity
        self.score = max(self.score, other.score)
        for reason in other.reasons:
            if reason not in self.reasons:
                self.reasons.append(reason)


@dataclass(slots=True)
class TrailEvent:
    """One event of the trail, with its signature."""

    function: str
    version: str
    request_id: str
    batch_id: str
    seq: int
    ts: float
    kind: str
    op: str
    target: str
    module: str
    verdict: str
    rule: str
    signature: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "function": self.function,
            "version": self.version,
            "request_id": self.request_id,
            "batch_id": self.batch_id,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "op": self.op,
            "target": self.target,
            "module": self.module,
            "verdict": self.verdict,
            "rule": self.rule,
            "signature": self.signature,
            "detail": self.detail,
        }


@dataclass
class Invocation:
    """One invocation record's summary (its events are trail rows)."""

    function: str
    version: str
    request_id: str
    batch_id: str
    started_at: float
    duration_ms: float
    outcome: str
    cold_start: bool
    events: int
    dropped: int
    event_digest: list[str]
    # The record's raw events and each one's signature (same order); empty when
    # only the summary was read.
    timeline: list[dict[str, Any]] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)

    def trail_events(self) -> list[TrailEvent]:
        """The invocation's events as trail rows."""
        return [
            TrailEvent(
                self.function,
                self.version,
                self.request_id,
                self.batch_id,
                int(ev["seq"]),
                float(ev["ts"]),
                ev["kind"],
                ev["op"],
                ev["target"],
                ev["module"],
                ev["verdict"],
                ev["rule"],
                sig,
                ev["detail"],
            )
            for ev, sig in zip(self.timeline, self.signatures, strict=True)
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "function": self.function,
            "version": self.version,
            "request_id": self.request_id,
            "batch_id": self.batch_id,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "cold_start": self.cold_start,
            "events": self.events,
            "dropped": self.dropped,
        }


@dataclass
class BatchDelta:
    """Everything one batch writes, applied by a store in one unit."""

    function: str
    batch_id: str
    received_at: float
    invocations: list[Invocation] = field(default_factory=list)
    versions: dict[tuple[str, str], VersionDelta] = field(default_factory=dict)
    sigs: dict[tuple[str, str, str], SigDelta] = field(default_factory=dict)
    alerts: dict[tuple[str, str, str], Alert] = field(default_factory=dict)
    # Ingest counters to add with the batch (``alerts.new`` is added by the store).
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def event_count(self) -> int:
        """Events in the batch's stored records."""
        return sum(len(i.timeline) for i in self.invocations)


@dataclass
class ProfileContext:
    """What detection needs from the store before a batch is applied."""

    version: VersionInfo | None
    prior: VersionInfo | None
    sigs: dict[str, SigStats]
    prior_sigs: dict[str, SigStats]
    rates: dict[str, dict[int, int]]
