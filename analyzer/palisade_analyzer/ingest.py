"""Ingest: from a signed batch body to stored trail, profiles and alerts.

:class:`Ingestor` is the one entry point; the HTTP server and the AWS Lambda
handlers both call :meth:`Ingestor.ingest` (or the payload functions below). Checks,
in order, each with its HTTP status and error code (and a counter
``rejected.<code>``): size (413 ``batch_too_large``), signature headers (401
``missing_signature``), key id (401 ``unknown_key``), timestamp within the replay
window (401 ``bad_timestamp`` / ``stale_timestamp``), HMAC (401
``bad_signature``), JSON (400 ``malformed_json``: not UTF-8, not JSON, nested
too deeply; 400 ``invalid_unicode``: a lone surrogate escape), batch schema (400
``schema_violation``), ``sent_at`` from 0 to the end of year 9999 (400
``implausible_timestamp``), the key's binding to ``source.function`` (403
``function_not_bound``). A batch id already applied answers 200 ``duplicate`` and
stores nothing. Within an accepted batch a record that fails the record schema or
names a function the key is not bound to, or whose ``started_at`` or event ``ts``
is not plausible unix seconds, is rejected alone (counted as
``rejected_records.<code>``); the others are stored. Our own failure answers 500
``internal_error`` and, the store being transactional, stores nothing.

Stream payloads (Kinesis, SQS) carry the same signed bytes in an envelope::

    {"schema": "palisade.signed/1", "headers": {"X-Palisade-Key-Id": ...,
     "X-Palisade-Timestamp": ..., "X-Palisade-Signature": ...}, "body": "<batch>"}

Limitation: each batch is one transaction (no group commit), a fixed cost of
about 0.5-1 ms, and the per-event work is Python (signature, counters, trail
encoding): about 10,000-14,000 events/s with one invocation per batch, 35,000-50,000
with fifty, below the 50,000 target for small batches. One ingestor applies one
batch at a time.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .detection import Detector
from .model import (
    Alert,
    BatchDelta,
    Invocation,
    SigDelta,
    VersionDelta,
)
from .profile import becomes_stable, bucket_of, rates_of
from .schemas import (
    envelope_is_valid,
    envelope_validator,
    first_error,
    record_is_valid,
    record_validator,
)
from .settings import Settings, load_settings
from .signatures import (
    Behaviour,
    behaviour_of,
    outside_behaviour,
    record_roots,
    rooted,
)
from .signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    KeyRing,
    signed_headers,
    verify,
)
from .store import Store

log = logging.getLogger(__name__)

ENVELOPE_SCHEMA = "palisade.signed/1"


@dataclass
class IngestResult:
    """The answer to one batch: HTTP status, code, message and what was kept."""

    status: int
    code: str
    message: str
    stored: int = 0
    duplicates: int = 0
    rejected_records: int = 0
    batch_id: str | None = None
    new_alerts: list[Alert] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The HTTP response body."""
        if self.status >= 400:
            return {"error": self.code, "message": self.message}
        return {
            "status": self.code,
            "message": self.message,
            "batch_id": self.batch_id,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected_records": self.rejected_records,
            "alerts": [a.id for a in self.new_alerts],
        }


class _Rejected(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_BIG_EXPONENT = re.compile(rb"[eE][+-]?\d{3}|\d{300}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"invalid byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"


def _lone_surrogate(doc: Any) -> str | None:
    """The JSON path of the first string holding a lone surrogate, or None.

    A ``\\ud800`` escape without its pair parses to a string that cannot be
    encoded as UTF-8, so nothing downstream could store it.
    """
    stack: list[tuple[str, Any]] = [("$", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(value, dict):
            for name, item in value.items():
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    return f"{path} (a key)"
                stack.append((f"{path}.{name}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # About 0.5 us per object (some 4% of a typical batch's ingest): cheap enough
    # to refuse what json.loads would silently resolve as "last one wins".
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateKey(name)
            seen.add(name)
    return doc


def parse_body(body: bytes, what: str) -> Any:
    """Parse a UTF-8 JSON body strictly; raise a 400 rejection naming the fault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(
            400,
            "malformed_json",
            f"{what} is not UTF-8 ({_not_utf8(exc)}): send UTF-8 encoded JSON",
        ) from None
    try:
        # Checking every float costs a Python call each: only bodies with a
        # 3-digit exponent or a 300-digit number can overflow to infinity.
        strict = _BIG_EXPONENT.search(body) is not None
        doc = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite if strict else None,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _Rejected(
            400,
            "malformed_json",
            f"{what} is nested too deeply to parse (expected a palisade.batch/1 "
            "document a few levels deep)",
        ) from None
    except _DuplicateKey as exc:
        raise _Rejected(
            400,
            "malformed_json",
            f"{what} has the key {str(exc)!r:.80} twice in one object: expected "
            "each key once (which one counts would be up to the parser)",
        ) from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise _Rejected(400, "malformed_json", f"{what} is not JSON: {exc}") from None
    # Walking the document costs a Python call per value: only a body with an
    # escaped surrogate (an escaped pair is legal JSON too) can hold a lone one.
    if _SURROGATE_ESCAPE.search(body) is not None:
        where = _lone_surrogate(doc)
        if where is not None:
            raise _Rejected(
                400,
                "invalid_unicode",
                f"{what} has a lone UTF-16 surrogate escape (\\ud800-\\udfff "
                f"without its pair) at {where:.200}: expected text that is valid "
                "Unicode",
            )
    return doc


# Unix seconds from 1970 to the end of year 9999: anything else is a broken clock
# or a forged record, and dates past 9999 cannot even be printed.
MAX_TIMESTAMP = 253_402_300_799.0


def _implausible_time(record: Mapping[str, Any]) -> str | None:
    """What makes a (schema-valid) record's times implausible, or None."""
    started = record.get("started_at")
    if started is not None and not 0 <= started <= MAX_TIMESTAMP:
        return f"started_at {started!r:.40}; {_PLAUSIBLE}"
    events = record["events"]
    if events:
        stamps = [event["ts"] for event in events]
        low, high = min(stamps), max(stamps)
        if low < 0 or high > MAX_TIMESTAMP:
            found = low if low < 0 else high
            return f"an event with ts {found!r:.40}; {_PLAUSIBLE}"
    return None


_PLAUSIBLE = f"expected unix seconds from 0 to {MAX_TIMESTAMP:.0f} (year 9999)"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


class Ingestor:
    """Validates, authenticates and applies batches to a store.

    Args:
        store: where batches go.
        keys: the accepted signing keys (an empty ring rejects every batch).
        settings: thresholds and limits; default: ``load_settings()`` (the
            PALISADE_ANALYZER_* environment).
        on_alert: called with the alerts each stored batch creates (after commit).
        clock: the time source for the replay window (tests move it).
    """

    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        settings: Settings | None = None,
        on_alert: Callable[[list[Alert]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.keys = keys
        self.settings = settings if settings is not None else load_settings()
        self.on_alert = on_alert
        self.clock = clock
        # One writer at a time: detection reads the profile the batch then updates.
        self._lock = threading.Lock()
        self._behaviours: dict[tuple[Any, ...], Behaviour] = {}

    def close(self) -> None:
        """Wait for the batch being applied, then close the store."""
        with self._lock:
            self.store.close()

    def ingest(self, body: bytes, headers: Mapping[str, str]) -> IngestResult:
        """Check and apply one batch; never raises."""
        try:
            result = self._ingest(body, headers)
        except _Rejected as rej:
            result = IngestResult(rej.status, rej.code, rej.message)
            self._count(f"rejected.{rej.code}")
            return result
        except Exception as exc:
            log.exception("ingest failed on our side; the batch was not stored")
            self._count("rejected.internal_error")
            return IngestResult(
                500,
                "internal_error",
                f"the analyzer failed ({type(exc).__name__}); nothing was stored, "
                "send the batch again",
            )
        return result

    def count_rejection(self, code: str) -> None:
        """Count a refusal made outside ``ingest`` (``rejected.<code>``)."""
        self._count(f"rejected.{code}")

    def _count(self, name: str, n: int = 1) -> None:
        try:
            self.store.count(name, n)
        except Exception:
            log.exception("could not count %s", name)

    def _authenticate(self, body: bytes, headers: Mapping[str, str]) -> Any:
        limit = self.settings.max_batch_bytes
        if len(body) > limit:
            raise _Rejected(
                413,
                "batch_too_large",
                f"batch body is {len(body)} bytes; the limit is {limit} "
                "(PALISADE_ANALYZER_MAX_BATCH_BYTES): send smaller batches",
            )
        key_id = _header(headers, KEY_ID_HEADER)
        stamp = _header(headers, TIMESTAMP_HEADER)
        signature = _header(headers, SIGNATURE_HEADER)
        missing = [
            name
            for name, value in (
                (KEY_ID_HEADER, key_id),
                (TIMESTAMP_HEADER, stamp),
                (SIGNATURE_HEADER, signature),
            )
            if not value
        ]
        if missing or key_id is None or stamp is None or signature is None:
            raise _Rejected(
                401,
                "missing_signature",
                f"expected headers {KEY_ID_HEADER}, {TIMESTAMP_HEADER} and "
                f"{SIGNATURE_HEADER}; missing {', '.join(missing)}",
            )
        key = self.keys.get(key_id)
        if key is None:
            raise _Rejected(
                401,
                "unknown_key",
                f"key id {key_id!r:.80} is not configured on this analyzer",
            )
        try:
            sent = int(stamp.strip())
        except ValueError:
            raise _Rejected(
                401,
                "bad_timestamp",
                f"{TIMESTAMP_HEADER} must be unix seconds; found {stamp!r:.40}",
            ) from None
        skew = abs(self.clock() - sent)
        window = self.settings.max_skew_seconds
        if skew > window:
            raise _Rejected(
                401,
                "stale_timestamp",
                f"{TIMESTAMP_HEADER} {sent} is {skew:.0f}s from the analyzer's "
                f"clock; at most {window}s is accepted (a replay, or a wrong clock)",
            )
        if not verify(key.secret, stamp.strip(), body, signature):
            raise _Rejected(
                401,
                "bad_signature",
                f"{SIGNATURE_HEADER} does not match the body for key {key_id!r}: "
                'expected v1=hex(HMAC-SHA256(secret, timestamp + "." + body))',
            )
        return key

    def _ingest(self, body: bytes, headers: Mapping[str, str]) -> IngestResult:
        key = self._authenticate(body, headers)
        doc = parse_body(body, "batch body")
        problem = (
            None if envelope_is_valid(doc) else first_error(envelope_validator(), doc)
        )
        if problem is not None:
            raise _Rejected(
                400,
                "schema_violation",
                f"batch does not match palisade.batch/1 at {problem}",
            )
        sent_at = doc["sent_at"]
        if not 0 <= sent_at <= MAX_TIMESTAMP:
            raise _Rejected(
                400,
                "implausible_timestamp",
                f"batch sent_at is {sent_at!r:.40}; {_PLAUSIBLE}",
            )
        function = doc["source"]["function"]
        if not key.allows(function):
            raise _Rejected(
                403,
                "function_not_bound",
                f"key {key.id!r} may report {list(key.functions)}, not function "
                f"{function!r}",
            )
        batch_id = doc["batch_id"]
        if self.store.has_batch(function, batch_id):
            return self._duplicate(doc)

        records, rejected, first_problem = self._valid_records(doc, key)
        outside = doc.get("outside")
        if outside:
            kept = [o for o in outside if 0 <= o["observed_at"] <= MAX_TIMESTAMP]
            if len(kept) < len(outside):
                log.warning(
                    "batch %s: %d outside finding(s) with observed_at outside "
                    "0..%.0f; dropped",
                    batch_id,
                    len(outside) - len(kept),
                    MAX_TIMESTAMP,
                )
                self._count(
                    "rejected_outside.implausible_timestamp", len(outside) - len(kept)
                )
                doc = {**doc, "outside": kept}
        if rejected and not records:
            # Nothing to keep: refuse the batch whole, so nothing (not even its id)
            # is stored and the sender sees why.
            code, message = first_problem
            raise _Rejected(
                403 if code == "function_not_bound" else 400,
                code,
                f"every record of batch {batch_id!r} was rejected; the first: "
                f"{message}",
            )
        with self._lock:
            delta = self.prepare(doc, records, self.clock())
            delta.stats.update(
                {
                    "batches.stored": 1,
                    "records.stored": len(records),
                    "events.stored": delta.event_count,
                }
            )
            if rejected:
                delta.stats["records.rejected"] = rejected
            result = self.store.apply(delta)
        if not result.stored:
            return self._duplicate(doc)
        if result.new_alerts and self.on_alert is not None:
            try:
                self.on_alert(result.new_alerts)
            except Exception:
                log.exception("an alert sink failed; alerts are stored")
        return IngestResult(
            202,
            "stored",
            f"stored {len(records)} record(s), rejected {rejected}",
            stored=len(records),
            rejected_records=rejected,
            batch_id=batch_id,
            new_alerts=result.new_alerts,
        )

    def _duplicate(self, doc: Mapping[str, Any]) -> IngestResult:
        self._count("batches.duplicate")
        return IngestResult(
            200,
            "duplicate",
            f"batch {doc['batch_id']!r} was already stored; nothing changed",
            duplicates=len(doc["records"]),
            batch_id=doc["batch_id"],
        )

    def _valid_records(
        self, doc: Mapping[str, Any], key: Any
    ) -> tuple[list[dict[str, Any]], int, tuple[str, str]]:
        """The records to keep, how many were rejected, and the first problem."""
        valid: list[dict[str, Any]] = []
        rejected = 0
        first = ("", "")
        checker = record_validator()
        for i, record in enumerate(doc["records"]):
            valid_fast = record_is_valid(record)
            problem = None if valid_fast else first_error(checker, record)
            if problem is not None:
                code = "schema_violation"
                message = f"record {i} does not match palisade.record/1 at {problem}"
            elif (bad := _implausible_time(record)) is not None:
                code = "implausible_timestamp"
                message = f"record {i} has {bad}"
            elif not key.allows(record["function"]):
                code = "function_not_bound"
                message = (
                    f"record {i} names function {record['function']!r}, which key "
                    f"{key.id!r} may not report"
                )
            else:
                valid.append(record)
                continue
            log.warning("batch %s: %s; rejected", doc["batch_id"], message)
            rejected += 1
            first = first if first[0] else (code, message)
            self._count(f"rejected_records.{code}")
        return valid, rejected, first

    def behaviour(
        self,
        event: Mapping[str, Any],
        roots: tuple[tuple[str, str], ...] = (),
    ) -> Behaviour:
        """The behaviour of an event, cached on the inputs that decide it.

        ``roots`` are the record's code and scratch roots (``record_roots``):
        paths under them are learned as ``$TASK_ROOT/...`` and ``$TMP/...``.
        """
        detail = event["detail"]
        kind = event["kind"]
        target = event["target"]
        if roots and kind in ("file", "process", "code"):
            target = rooted(target, roots)
            dst = detail.get("dst")
            if isinstance(dst, str) and dst != rooted(dst, roots):
                detail = {**detail, "dst": rooted(dst, roots)}
        cache_key: tuple[Any, ...]
        if kind == "process":
            argv = detail.get("argv")
            cache_key = (
                kind,
                event["op"],
                target,
                tuple(map(str, argv)) if isinstance(argv, list) else None,
                bool(detail.get("shell")),
            )
        elif kind == "network":
            get = detail.get
            cache_key = (
                kind,
                event["op"],
                target,
                get("resolved_from"),
                get("port"),
                get("protocol"),
                get("ip"),
            )
        elif kind == "aws":
            get = detail.get
            cache_key = (
                kind,
                event["op"],
                target,
                get("service"),
                get("operation"),
                get("resource"),
            )
        elif kind == "file":
            cache_key = (kind, event["op"], target, detail.get("dst"))
        else:
            cache_key = (kind, event["op"], target)
        cache = self._behaviours
        try:
            found = cache.get(cache_key)
        except TypeError:
            # Detail values are arbitrary JSON: a list or object is not hashable.
            return behaviour_of(kind, event["op"], target, detail)
        if found is None:
            if len(cache) > 50_000:
                cache.clear()
            found = behaviour_of(kind, event["op"], target, detail)
            cache[cache_key] = found
        return found

    def prepare(
        self,
        doc: Mapping[str, Any],
        records: Sequence[Mapping[str, Any]],
        received_at: float,
    ) -> BatchDelta:
        """Turn valid records into the batch's delta (trail, counters, alerts)."""
        batch_id = doc["batch_id"]
        delta = BatchDelta(doc["source"]["function"], batch_id, received_at)
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for record in records:
            groups[(record["function"], record["version"])].append(record)
        for (function, version), group in groups.items():
            analysed = [
                (record, [(ev, self.behaviour(ev, roots)) for ev in record["events"]])
                for record in group
                for roots in (record_roots(record),)
            ]
            names = {b.signature for _, pairs in analysed for _, b in pairs}
            ctx = self.store.load_context(function, version, names)
            detector = Detector(ctx, self.settings)
            vd = VersionDelta()
            group_sigs: dict[str, SigDelta] = {}
            for record, pairs in analysed:
                self._add_record(
                    delta, vd, group_sigs, function, version, record, pairs, doc
                )
                detector.detect(function, version, record, pairs, delta.alerts)
            for sig, sd in group_sigs.items():
                delta.sigs[(function, version, sig)] = sd
            self._learning(delta, vd, function, version, ctx, names)
            delta.versions[(function, version)] = vd
        self._outside(delta, doc)
        for reason, count in (doc.get("drops") or {}).items():
            delta.stats[f"drops.{reason}"] = (
                delta.stats.get(f"drops.{reason}", 0) + count
            )
        return delta

    def _outside(self, delta: BatchDelta, doc: Mapping[str, Any]) -> None:
        """Learn and score the extension's /proc findings of the batch's source."""
        findings = [
            (item, outside_behaviour(item["kind"], item["target"]))
            for item in doc.get("outside") or []
        ]
        if not findings:
            return
        function, version = doc["source"]["function"], doc["source"]["version"]
        names = {b.signature for _, b in findings}
        ctx = self.store.load_context(function, version, names)
        Detector(ctx, self.settings).outside(function, version, findings, delta.alerts)
        vd = delta.versions.setdefault((function, version), VersionDelta())
        for item, behaviour in findings:
            ts = float(item["observed_at"])
            vd.first_seen = min(vd.first_seen, ts)
            vd.last_seen = max(vd.last_seen, ts)
            key = (function, version, behaviour.signature)
            sd = delta.sigs.get(key)
            if sd is None:
                sd = SigDelta(behaviour.kind, behaviour.sensitivity)
                delta.sigs[key] = sd
            sd.add(ts, "<native>")
            sd.invocations += 1
            sd.cold += 1  # a library or process of the runtime's process
        if vd.stable_at is not None:
            # The batch that ends learning is learned whole, findings included.
            vd.stable_at = max(vd.stable_at, vd.last_seen)

    def _add_record(
        self,
        delta: BatchDelta,
        vd: VersionDelta,
        sigs: dict[str, SigDelta],
        function: str,
        version: str,
        record: Mapping[str, Any],
        pairs: Sequence[tuple[Mapping[str, Any], Behaviour]],
        doc: Mapping[str, Any],
    ) -> None:
        request_id = record["request_id"]
        events = record["events"]
        started = record.get("started_at")
        if started is None:
            started = min((float(e["ts"]) for e in events), default=doc["sent_at"])
        started = float(started)
        is_init = request_id == "init" or record.get("outcome") == "init"
        cold = is_init or bool(record["cold_start"])
        if is_init:
            vd.inits += 1
        elif cold:
            vd.cold_starts += 1
        if not is_init:
            vd.invocations += 1
            for metric, value in rates_of(events).items():
                hist = vd.rates.setdefault(metric, {})
                bucket = bucket_of(value)
                hist[bucket] = hist.get(bucket, 0) + 1
        vd.events += len(events)
        vd.first_seen = min(vd.first_seen, started)
        vd.last_seen = max(vd.last_seen, started)
        seen: set[str] = set()
        signatures: list[str] = []
        last = vd.last_seen
        # The hot loop of ingest: SigDelta.add inlined.
        for event, behaviour in pairs:
            sig = behaviour.signature
            signatures.append(sig)
            ts = float(event["ts"])
            if ts > last:
                last = ts
            sd = sigs.get(sig)
            if sd is None:
                sd = SigDelta(behaviour.kind, behaviour.sensitivity)
                sigs[sig] = sd
            sd.count += 1
            if ts < sd.first_seen:
                sd.first_seen = ts
            if ts > sd.last_seen:
                sd.last_seen = ts
            sd.packages.add(event["module"])
            if sig not in seen:
                sd.invocations += 1
                sd.cold += cold
                seen.add(sig)
        vd.last_seen = last
        delta.invocations.append(
            Invocation(
                function,
                version,
                request_id,
                delta.batch_id,
                started,
                float(record["duration_ms"]),
                str(record.get("outcome") or ""),
                bool(record["cold_start"]),
                len(events),
                int(record["dropped"]),
                list(record.get("event_digest") or []),
                timeline=events,
                signatures=signatures,
            )
        )

    def _learning(
        self,
        delta: BatchDelta,
        vd: VersionDelta,
        function: str,
        version: str,
        ctx: Any,
        names: set[str],
    ) -> None:
        new_times = [
            delta.sigs[(function, version, s)].first_seen
            for s in names
            if s not in ctx.sigs
        ]
        if new_times:
            vd.last_new_at = max(new_times)
        info = ctx.version
        if info is None and ctx.prior is not None:
            vd.prior = ctx.prior.version
        prior = info.prior if info else vd.prior
        last_new_candidates = [
            t for t in (vd.last_new_at, info and info.last_new_at) if t
        ]
        last_new = max(last_new_candidates) if last_new_candidates else None
        invocations = vd.invocations + (info.invocations if info else 0)
        first_seen = min(vd.first_seen, info.first_seen) if info else vd.first_seen
        last_seen = max(vd.last_seen, info.last_seen) if info else vd.last_seen
        if becomes_stable(
            info, prior, invocations, first_seen, last_seen, last_new, self.settings
        ):
            vd.stable_at = last_seen


# -- payload shapes of the AWS event sources ----------------------------------------


def signed_envelope(
    key_id: str, secret: str | bytes, body: bytes, timestamp: int
) -> bytes:
    """A stream message (Kinesis data, SQS body) carrying one signed batch."""
    return json.dumps(
        {
            "schema": ENVELOPE_SCHEMA,
            "headers": signed_headers(key_id, secret, body, timestamp),
            "body": body.decode("utf-8"),
        }
    ).encode()


def _open_envelope(data: bytes) -> tuple[bytes, dict[str, str]]:
    try:
        doc = parse_body(data, "stream message")
    except _Rejected as rej:
        if rej.code != "malformed_json" or "nested too deeply" in rej.message:
            raise
        doc = None
    ok = (
        isinstance(doc, dict)
        and doc.get("schema") == ENVELOPE_SCHEMA
        and isinstance(doc.get("headers"), dict)
        and isinstance(doc.get("body"), str)
    )
    if not ok or not isinstance(doc, dict):
        # Not an envelope: the body alone, which will fail authentication.
        return data, {}
    headers = {str(k): str(v) for k, v in doc["headers"].items()}
    return doc["body"].encode("utf-8"), headers


def _refusal(ingestor: Ingestor, rej: _Rejected) -> IngestResult:
    ingestor.count_rejection(rej.code)
    return IngestResult(rej.status, rej.code, rej.message)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Rejected(
            400,
            "invalid_unicode",
            f"{what} has a lone UTF-16 surrogate at character {exc.start}: expected "
            "text that is valid Unicode",
        ) from None


def ingest_message(ingestor: Ingestor, data: bytes) -> IngestResult:
    """Ingest one stream message (a ``palisade.signed/1`` envelope)."""
    try:
        body, headers = _open_envelope(data)
    except _Rejected as rej:
        return _refusal(ingestor, rej)
    return ingestor.ingest(body, headers)


def ingest_function_url(ingestor: Ingestor, event: Mapping[str, Any]) -> dict[str, Any]:
    """Ingest a Lambda Function URL (or API Gateway v2) request; return the response."""
    raw = event.get("body") or ""
    try:
        if event.get("isBase64Encoded"):
            body = base64.b64decode(raw, validate=True)
        else:
            body = _utf8(raw, "body") if isinstance(raw, str) else bytes(raw)
    except _Rejected as rej:
        result = _refusal(ingestor, rej)
    except (binascii.Error, ValueError, TypeError):
        result = IngestResult(400, "malformed_body", "body is not valid base64")
        ingestor.count_rejection("malformed_body")
    else:
        headers = event.get("headers") or {}
        result = ingestor.ingest(body, {str(k): str(v) for k, v in headers.items()})
    return {
        "statusCode": result.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(result.to_json()),
    }


def ingest_stream_event(ingestor: Ingestor, event: Mapping[str, Any]) -> dict[str, Any]:
    """Ingest a Kinesis or SQS event; report retryable failures.

    Each message is one envelope. Permanent rejections (4xx) are counted and
    dropped (a retry would fail again); our own failures (5xx) are returned as
    ``batchItemFailures`` so the event source retries only those messages.
    """
    failures: list[dict[str, str]] = []
    results: list[dict[str, Any]] = []
    for message in event.get("Records") or []:
        if "kinesis" in message:
            ident = str(message["kinesis"].get("sequenceNumber", ""))
            try:
                data = base64.b64decode(
                    message["kinesis"].get("data", ""), validate=True
                )
            except (binascii.Error, ValueError, TypeError):
                ingestor.count_rejection("malformed_body")
                results.append({"id": ident, "status": 400, "code": "malformed_body"})
                continue
        else:
            ident = str(message.get("messageId", ""))
            body = message.get("body") or ""
            try:
                data = _utf8(body, "message") if isinstance(body, str) else bytes(body)
            except _Rejected as rej:
                result = _refusal(ingestor, rej)
                results.append({"id": ident, "status": result.status, "code": rej.code})
                continue
        result = ingest_message(ingestor, data)
        results.append({"id": ident, "status": result.status, "code": result.code})
        if result.status >= 500:
            failures.append({"itemIdentifier": ident})
    return {"batchItemFailures": failures, "results": results}
