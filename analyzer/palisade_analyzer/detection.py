"""Detection: which behaviours of a batch deserve an alert, and how severe.

Score = newness x sensitivity weight (``signatures.SENSITIVITY``), x 1.5 when the
event's arguments contain text from the invocation's own event (``event_digest``:
the mark of event-data injection). Newness against the profile before the batch:

- ``new`` (1.0): never seen, first seen after the profile became stable, or
  decayed; ``rare`` (0.3): learned but seen in a single invocation or in fewer
  than ``rare_fraction`` of them; known behaviour scores 0.

Only a ``stable`` profile scores newness. A ``relearning`` one (new code version)
scores new behaviour of weight >= 0.7 that its prior never showed; a ``learning``
one scores none. Whatever the state, an event decided by a built-in rule
(``builtin:*``) scores at least 1.0 and one alerted or blocked by the policy at
least 0.6 / 0.9. Scores from ``alert_min_score`` raise an alert; severity is
``critical`` from 1.2, ``high`` from 0.8, ``medium`` from 0.5, else ``low``.

A DNS lookup of a host that the same invocation then connects to is folded into
the network alert. Per-invocation rates above median + ``rate_mads`` scaled MADs
(and at least ``rate_min_delta`` above the median) raise ``rate:<metric>``
alerts on stable profiles.

Limitation: detection reads the profile before the batch is applied; two analyzer
instances scoring the same function at the same moment may both find a behaviour
new (one alert, both counts, possibly sent twice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import Alert, ProfileContext
from .profile import METRICS, is_baseline, is_live, rate_threshold, rates_of
from .settings import Settings
from .signatures import Behaviour, host_of, injected_strings

NEWNESS = {"new": 1.0, "decayed": 1.0, "post-learning": 1.0, "rare": 0.3}


def severity_of(score: float) -> str:
    """The severity name of a score."""
    if score >= 1.2:
        return "critical"
    if score >= 0.8:
        return "high"
    if score >= 0.5:
        return "medium"
    return "low"


@dataclass
class _Candidate:
    behaviour: Behaviour
    score: float
    newness: str
    reasons: list[str]
    events: list[Mapping[str, Any]] = field(default_factory=list)
    injected: set[str] = field(default_factory=set)


def evidence_of(
    event: Mapping[str, Any], record: Mapping[str, Any], injected: Sequence[str]
) -> dict[str, Any]:
    """The evidence kept for one event: who, when, what, and how it was decided."""
    out: dict[str, Any] = {
        "request_id": event["request_id"],
        "ts": event["ts"],
        "seq": event["seq"],
        "op": event["op"],
        "target": event["target"],
        "module": event["module"],
        "verdict": event["verdict"],
        "rule": event["rule"],
    }
    argv = event["detail"].get("argv")
    if isinstance(argv, list):
        out["argv"] = [str(a) for a in argv][:32]
    if injected:
        out["event_data"] = sorted(injected)
    out["cold_start"] = record.get("cold_start", False)
    return out


class Detector:
    """Scores one (function, version)'s records against its profile context."""

    def __init__(self, ctx: ProfileContext, settings: Settings):
        self.ctx = ctx
        self.settings = settings
        self.state = (
            ctx.version.state
            if ctx.version
            else ("relearning" if ctx.prior else "learning")
        )
        self._newness: dict[str, str | None] = {}
        self._rate_limits = {
            metric: rate_threshold(ctx.rates.get(metric, {}), settings)
            for metric in METRICS
        }

    def newness(self, signature: str) -> str | None:
        """How new a signature is against the profile (None: known)."""
        if signature in self._newness:
            return self._newness[signature]
        result = self._compute_newness(signature)
        self._newness[signature] = result
        return result

    def _compute_newness(self, signature: str) -> str | None:
        ctx, settings = self.ctx, self.settings
        info = ctx.version
        stats = ctx.sigs.get(signature)
        prior = ctx.prior_sigs.get(signature)
        if prior is not None and is_baseline(prior, ctx.prior, settings):
            known_by_prior = True
        else:
            known_by_prior = False
        if stats is None:
            return None if known_by_prior else "new"
        if not is_live(stats, info, settings):
            return None if known_by_prior else "decayed"
        if not is_baseline(stats, info, settings):
            return None if known_by_prior else "post-learning"
        total = info.invocations if info else 0
        if stats.invocations <= 1 or (
            total and stats.invocations / total < settings.rare_fraction
        ):
            return "rare"
        return None

    def _score(
        self, event: Mapping[str, Any], behaviour: Behaviour
    ) -> tuple[float, str, list[str]]:
        reasons: list[str] = []
        score = 0.0
        newness = self.newness(behaviour.signature) or "known"
        if self.state == "stable" and newness in NEWNESS:
            score = NEWNESS[newness] * behaviour.weight
        elif (
            self.state == "relearning"
            and newness in ("new", "decayed", "post-learning")
            and behaviour.weight >= 0.7
        ):
            score = behaviour.weight
        if score:
            reasons.append(f"{newness} behaviour of class {behaviour.sensitivity}")
        rule, verdict = event["rule"], event["verdict"]
        if rule.startswith("builtin:"):
            score = max(score, 1.0)
            reasons.append(f"built-in rule {rule[len('builtin:') :]} ({verdict})")
            newness = "builtin" if newness == "known" else newness
        elif verdict in ("alerted", "blocked") and rule not in ("base", "aws-endpoint"):
            score = max(score, 0.9 if verdict == "blocked" else 0.6)
            reasons.append(f"policy verdict {verdict} by {rule}")
            newness = "policy" if newness == "known" else newness
        return score, newness, reasons

    def detect(
        self,
        function: str,
        version: str,
        record: Mapping[str, Any],
        behaviours: Sequence[tuple[Mapping[str, Any], Behaviour]],
        out: dict[tuple[str, str, str], Alert],
    ) -> None:
        """Add the alerts of one invocation record to ``out`` (merged by key)."""
        digest = record.get("event_digest") or []
        settings = self.settings
        candidates: dict[str, _Candidate] = {}
        for event, behaviour in behaviours:
            score, newness, reasons = self._score(event, behaviour)
            if not score:
                continue
            injected = injected_strings(
                event["kind"], event["target"], event["detail"], digest
            )
            if injected:
                score *= 1.5
                reasons.append("event data in arguments")
            if score < settings.alert_min_score:
                continue
            cand = candidates.get(behaviour.signature)
            if cand is None:
                cand = _Candidate(behaviour, score, newness, reasons)
                candidates[behaviour.signature] = cand
            else:
                cand.score = max(cand.score, score)
                cand.reasons.extend(r for r in reasons if r not in cand.reasons)
            cand.events.append(event)
            cand.injected.update(injected)
        self._fold_dns(candidates)
        if self.state == "stable" and record.get("request_id") != "init":
            self._rates(record, candidates)
        for signature, cand in candidates.items():
            alert = self._alert(function, version, signature, cand, record)
            key = (function, version, signature)
            if key in out:
                out[key].merge(alert)
                room = settings.evidence_max - len(out[key].evidence)
                out[key].evidence.extend(alert.evidence[: max(room, 0)])
            else:
                out[key] = alert

    def outside(
        self,
        function: str,
        version: str,
        findings: Sequence[tuple[Mapping[str, Any], Behaviour]],
        out: dict[tuple[str, str, str], Alert],
    ) -> None:
        """Alerts for what the extension saw in /proc and the layer did not report.

        An unreported process or connection alerts whatever the state (at least
        0.9: native code or tampering); an unreported library is scored like any
        behaviour, since C extensions load libraries the layer cannot see.
        """
        for finding, behaviour in findings:
            newness = self.newness(behaviour.signature) or "known"
            factor = NEWNESS.get(newness, 0.0) if self.state == "stable" else 0.0
            score = factor * behaviour.weight
            if behaviour.sensitivity != "unreported-library":
                score = max(score, 0.9)
            if score < self.settings.alert_min_score:
                continue
            ts = float(finding["observed_at"])
            evidence = {
                "request_id": finding.get("request_id"),
                "ts": ts,
                "target": finding["target"],
                "detail": finding.get("detail") or {},
                "source": "extension /proc view",
            }
            alert = Alert(
                function=function,
                version=version,
                signature=behaviour.signature,
                kind=behaviour.kind,
                sensitivity=behaviour.sensitivity,
                severity=severity_of(score),
                score=score,
                newness="outside" if newness == "known" else newness,
                reasons=[
                    f"the extension saw this {finding['kind']} in /proc but the layer "
                    "did not report it (native code or tampering)"
                ],
                count=1,
                first_seen=ts,
                last_seen=ts,
                evidence=[evidence],
                last_evidence=evidence,
                state=self.state,
            )
            key = (function, version, behaviour.signature)
            if key in out:
                out[key].merge(alert)
            else:
                out[key] = alert

    def _fold_dns(self, candidates: dict[str, _Candidate]) -> None:
        if not candidates:
            return
        hosts = {
            host_of("network", ev["target"], ev["detail"])
            for cand in candidates.values()
            if cand.behaviour.kind == "network"
            for ev in cand.events
        }
        for signature in [
            s for s, c in candidates.items() if c.behaviour.kind == "dns"
        ]:
            cand = candidates[signature]
            if all(host_of("dns", ev["target"], {}) in hosts for ev in cand.events):
                del candidates[signature]

    def _rates(
        self, record: Mapping[str, Any], candidates: dict[str, _Candidate]
    ) -> None:
        counts = _record_rates(record)
        for metric, value in counts.items():
            limit = self._rate_limits.get(metric)
            if limit is None or value <= limit:
                continue
            behaviour = Behaviour(f"rate:{metric}", "rate", "rate")
            cand = _Candidate(
                behaviour,
                0.6,
                "rate",
                [f"{metric} per invocation {value} above the usual {limit:.0f}"],
            )
            candidates[behaviour.signature] = cand

    def _alert(
        self,
        function: str,
        version: str,
        signature: str,
        cand: _Candidate,
        record: Mapping[str, Any],
    ) -> Alert:
        if cand.events:
            evidence = [
                evidence_of(ev, record, sorted(cand.injected))
                for ev in cand.events[: self.settings.evidence_max]
            ]
            times = [float(ev["ts"]) for ev in cand.events]
        else:
            ts = float(record.get("started_at") or 0.0)
            evidence = [
                {
                    "request_id": record["request_id"],
                    "ts": ts,
                    "rates": _record_rates(record),
                }
            ]
            times = [ts]
        return Alert(
            function=function,
            version=version,
            signature=signature,
            kind=cand.behaviour.kind,
            sensitivity=cand.behaviour.sensitivity,
            severity=severity_of(cand.score),
            score=cand.score,
            newness=cand.newness,
            reasons=list(cand.reasons),
            count=max(len(cand.events), 1),
            first_seen=min(times),
            last_seen=max(times),
            evidence=evidence,
            last_evidence=evidence[-1],
            state=self.state,
        )


def _record_rates(record: Mapping[str, Any]) -> dict[str, int]:
    return rates_of(record["events"])
