"""The storage interface every backend implements with the same behaviour.

Backends: :class:`~palisade_analyzer.sqlite_store.SQLiteStore` (default, one file)
and :class:`~palisade_analyzer.aws_store.AWSStore` (DynamoDB + S3). The analyzer's
logic talks to this protocol only; the backend test suite runs on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .model import (
    Alert,
    BatchDelta,
    Invocation,
    ProfileContext,
    SigStats,
    TrailEvent,
    VersionInfo,
)


@dataclass
class ApplyResult:
    """What applying one batch did."""

    stored: bool
    new_alerts: list[Alert] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """Trail, profiles, alerts, batch ids and counters of one analyzer."""

    def has_batch(self, function: str, batch_id: str) -> bool:
        """Whether the batch ``batch_id`` of ``function`` was applied already."""
        ...

    def load_context(
        self, function: str, version: str, signatures: Iterable[str]
    ) -> ProfileContext:
        """The version's state, its prior, and the named signatures' counters.

        The prior is the version named by the profile, or, for a version not seen
        yet, the function's most recently seen other version. The rate histograms
        are read for a stable version only (empty otherwise).
        """
        ...

    def apply(self, delta: BatchDelta) -> ApplyResult:
        """Apply a batch exactly once: everything or nothing.

        Returns ``stored=False`` (and changes nothing) when the batch id was
        applied before; ``new_alerts`` are the alerts this batch created.
        """
        ...

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the ingest counter ``name`` (atomic)."""
        ...

    def stats(self) -> dict[str, int]:
        """Every ingest counter."""
        ...

    def functions(self) -> list[str]:
        """Names of the functions with a profile."""
        ...

    def versions(self, function: str) -> list[VersionInfo]:
        """The function's versions, oldest first (by first seen)."""
        ...

    def version(self, function: str, version: str) -> VersionInfo | None:
        """One version's counters and state."""
        ...

    def signatures(self, function: str, version: str) -> list[SigStats]:
        """Every signature of a version's profile, sorted by signature."""
        ...

    def rates(self, function: str, version: str) -> dict[str, dict[int, int]]:
        """Per-invocation rate histograms: metric -> bucket -> invocations."""
        ...

    def alerts(
        self, since: float | None = None, function: str | None = None
    ) -> list[Alert]:
        """Alerts last seen at or after ``since``, most recent first."""
        ...

    def invocations(
        self,
        function: str,
        request_id: str | None = None,
        since: float | None = None,
    ) -> list[Invocation]:
        """Invocation summaries, oldest first."""
        ...

    def trail(
        self,
        function: str,
        request_id: str | None = None,
        since: float | None = None,
    ) -> list[TrailEvent]:
        """Events of the function (or of one request), in time order."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# Reads the named signatures' counters of one version: (function, version, names).
SigsReader = Callable[[str, str, list[str]], dict[str, SigStats]]
# Reads one version's rate histograms: (function, version).
RatesReader = Callable[[str, str], dict[str, dict[int, int]]]


def profile_context(
    function: str,
    version: str,
    info: VersionInfo | None,
    prior: VersionInfo | None,
    signatures: Iterable[str],
    *,
    sigs_named: SigsReader,
    rates: RatesReader,
) -> ProfileContext:
    """The context of ``version`` once a backend has found it and its prior.

    Both versions' counters of the named signatures are read; the rate histograms
    only for a stable version (empty otherwise).
    """
    names = sorted(set(signatures))
    sigs = sigs_named(function, version, names)
    prior_sigs = sigs_named(function, prior.version, names) if prior else {}
    # Rates only matter to a stable profile (rate jumps are not scored before).
    stable = info is not None and info.stable_at is not None
    histograms = rates(function, version) if stable else {}
    return ProfileContext(info, prior, sigs, prior_sigs, histograms)
