"""The AWS store: profiles, alerts, state and batch ids in DynamoDB, trail in S3.

Tables (names ``<prefix>profiles`` and ``<prefix>alerts``, string keys ``pk`` and
``sk``, on-demand capacity; :meth:`AWSStore.create_tables` makes them):

=====================  =========================  ==============================
item                   pk                         sk
=====================  =========================  ==============================
version counters       ``v#<function>``           ``<version>``
signature counters     ``s#<function>#<version>`` ``<signature>``
rate histograms        ``r#<function>#<version>`` ``<metric>`` (``b<bucket>`` N)
batch markers          ``b#<function>``           ``<batch_id>`` / ``…#c<i>``
ingest counters        ``stats``                  ``<name>``
function registry      ``functions``              ``<function>``
alerts (alerts table)  ``<function>``             ``<version>#<signature>``
=====================  =========================  ==============================

Counters use ``ADD`` (atomic, commutative); set-once fields use
``if_not_exists``; minimum/maximum fields are fixed up with conditional writes
(``first_seen > :t``), which are idempotent. So many analyzer instances can apply
batches at once. A batch's counter updates go in ``TransactWriteItems`` calls of
at most ``transaction_items`` items, each with a chunk marker written under
``attribute_not_exists``: a batch that fits one transaction is all-or-nothing; a
larger one is applied chunk by chunk, and a retry after a crash applies only the
missing chunks, so nothing is ever counted twice. The final marker ``b#…/<id>``
makes the batch a duplicate.

Trail: one JSON-lines object per (function, batch) at
``trail/function=<f>/date=YYYY-MM-DD/<batch_id>.jsonl`` (Hive-style partitions for
Athena), written before the counters; readers skip objects whose batch has no
final marker.

Limitations: ``trail`` and ``invocations`` list the function's objects in S3 (use
Athena at scale); a batch larger than one transaction is visible half-applied
until its retry; two instances applying the same batch at the same moment may
both send its new alerts; ``alerts`` without a function scans the alerts table.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from .model import (
    SEVERITIES,
    Alert,
    BatchDelta,
    Invocation,
    ProfileContext,
    SigStats,
    TrailEvent,
    VersionInfo,
    utc,
)
from .store import ApplyResult, profile_context

log = logging.getLogger(__name__)


def _segment(text: str) -> str:
    # Every character but [A-Za-z0-9_.~-] is %-escaped, "/" included, so a name
    # can never add or climb a level; the "function=" prefix and ".jsonl" suffix
    # keep "." and ".." from being a whole segment.
    return urllib.parse.quote(text, safe="")


def trail_prefix(function: str) -> str:
    """The S3 prefix under which a function's trail objects live."""
    return f"trail/function={_segment(function)}/"


def trail_key(function: str, day: str, batch_id: str) -> str:
    """The S3 key of one batch's trail, safe for any function name and batch id."""
    return f"{trail_prefix(function)}date={_segment(day)}/{_segment(batch_id)}.jsonl"


def _n(value: float | int) -> dict[str, str]:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": repr(float(value))}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _num(attr: dict[str, Any] | None) -> float | None:
    if attr is None or "NULL" in attr:
        return None
    return float(attr["N"])


def _int(attr: dict[str, Any] | None) -> int:
    return int(float(attr["N"])) if attr and "N" in attr else 0


def _str(attr: dict[str, Any] | None) -> str | None:
    if attr is None or "NULL" in attr:
        return None
    return str(attr["S"])


def _conditional_failed(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code == "ConditionalCheckFailedException"


class AWSStore:
    """The :class:`~palisade_analyzer.store.Store` on DynamoDB and S3.

    Args:
        table_prefix: prefix of the two table names.
        bucket: S3 bucket of the trail.
        region, endpoint_url: where the AWS APIs are (endpoint for local stacks).
        transaction_items: largest TransactWriteItems call (DynamoDB allows 100).
    """

    def __init__(
        self,
        table_prefix: str = "palisade-analyzer-",
        bucket: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        transaction_items: int = 100,
        dynamodb: Any = None,
        s3: Any = None,
    ):
        import boto3

        if not bucket:
            raise ValueError(
                "the aws backend needs a trail bucket: pass --bucket or set "
                "PALISADE_ANALYZER_BUCKET"
            )
        self.profiles_table = f"{table_prefix}profiles"
        self.alerts_table = f"{table_prefix}alerts"
        self.bucket = bucket
        self.region = region
        self.transaction_items = max(2, min(transaction_items, 100))
        kwargs: dict[str, Any] = {"region_name": region}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        self.ddb = dynamodb or boto3.client("dynamodb", **kwargs)
        self.s3 = s3 or boto3.client("s3", **kwargs)
        self._committed: dict[tuple[str, str], bool] = {}
        # (table, pk, sk) -> (first_seen, last_seen) known to be stored. The true
        # first_seen can only be lower and last_seen only higher, so a fix-up that
        # these bounds already satisfy is skipped (safe with other writers).
        self._bounds: dict[tuple[str, str, str], tuple[float, float]] = {}

    # -- setup ----------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create both tables and the bucket when missing (tests, first deploy)."""
        existing = set(self.ddb.list_tables().get("TableNames", []))
        for name in (self.profiles_table, self.alerts_table):
            if name in existing:
                continue
            self.ddb.create_table(
                TableName=name,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            self.ddb.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
            )
        buckets = {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}
        if self.bucket not in buckets:
            region = self.region or self.s3.meta.region_name
            if region and region != "us-east-1":
                self.s3.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},
                )
            else:
                self.s3.create_bucket(Bucket=self.bucket)

    def close(self) -> None:
        """Nothing to release: boto3 clients pool their own connections."""

    # -- low-level calls --------------------------------------------------------------

    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return {"pk": _s(pk), "sk": _s(sk)}

    def _get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(
            TableName=table, Key=self._key(pk, sk), ConsistentRead=True
        ).get("Item")
        return dict(item) if item else None

    def _query(self, table: str, pk: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(pk)},
            "ConsistentRead": True,
        }
        while True:
            page = self.ddb.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(
        self, table: str, keys: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                table: {
                    "Keys": [self._key(pk, sk) for pk, sk in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                answer = self.ddb.batch_get_item(RequestItems=pending)
                found.extend(answer.get("Responses", {}).get(table, []))
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.05)
        return found

    def _update(
        self,
        table: str,
        pk: str,
        sk: str,
        expression: str,
        values: dict[str, Any],
        condition: str | None = None,
        names: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "TableName": table,
            "Key": self._key(pk, sk),
            "UpdateExpression": expression,
        }
        if values:
            op["ExpressionAttributeValues"] = values
        if condition:
            op["ConditionExpression"] = condition
        if names:
            op["ExpressionAttributeNames"] = names
        return op

    def _fixup(self, op: dict[str, Any]) -> None:
        """A conditional write whose failed condition means 'already so'."""
        try:
            self.ddb.update_item(**op)
        except Exception as exc:
            if not _conditional_failed(exc):
                raise

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """One transaction; False when its chunk marker shows it applied before."""
        for attempt in range(8):
            try:
                self.ddb.transact_write_items(TransactItems=items)
                return True
            except Exception as exc:
                response = getattr(exc, "response", {})
                reasons = response.get("CancellationReasons") or []
                codes = [r.get("Code") for r in reasons]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
                code = response.get("Error", {}).get("Code", "")
                retryable = "TransactionConflict" in codes or code in (
                    "TransactionInProgressException",
                    "ThrottlingException",
                    "ProvisionedThroughputExceededException",
                )
                if not retryable or attempt == 7:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return False

    # -- ingest -----------------------------------------------------------------------

    def has_batch(self, function: str, batch_id: str) -> bool:
        """Whether the batch's final marker exists."""
        return self._get(self.profiles_table, f"b#{function}", batch_id) is not None

    def _version_of(self, item: dict[str, Any]) -> VersionInfo:
        return VersionInfo(
            function=str(_str(item.get("function")) or item["pk"]["S"][2:]),
            version=str(item["sk"]["S"]),
            invocations=_int(item.get("invocations")),
            events=_int(item.get("events")),
            first_seen=_num(item.get("first_seen")) or 0.0,
            last_seen=_num(item.get("last_seen")) or 0.0,
            last_new_at=_num(item.get("last_new_at")),
            stable_at=_num(item.get("stable_at")),
            prior=_str(item.get("prior")),
            inits=_int(item.get("inits")),
            cold_starts=_int(item.get("cold_starts")),
        )

    def _sig_of(self, function: str, version: str, item: dict[str, Any]) -> SigStats:
        return SigStats(
            function=function,
            version=version,
            signature=str(item["sk"]["S"]),
            kind=str(_str(item.get("kind"))),
            sensitivity=str(_str(item.get("sensitivity"))),
            count=_int(item.get("count")),
            invocations=_int(item.get("invocations")),
            first_seen=_num(item.get("first_seen")) or 0.0,
            last_seen=_num(item.get("last_seen")) or 0.0,
            packages=sorted(item.get("packages", {}).get("SS", [])),
            cold=_int(item.get("cold")),
        )

    def load_context(
        self, function: str, version: str, signatures: Iterable[str]
    ) -> ProfileContext:
        """The version, its prior and the named signatures' counters."""
        info = self.version(function, version)
        prior: VersionInfo | None = None
        if info is not None and info.prior:
            prior = self.version(function, info.prior)
        elif info is None:
            others = [v for v in self.versions(function) if v.version != version]
            prior = max(others, key=lambda v: v.last_seen) if others else None
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
        pk = f"s#{function}#{version}"
        items = self._batch_get(self.profiles_table, [(pk, n) for n in names])
        found = {
            item["sk"]["S"]: self._sig_of(function, version, item) for item in items
        }
        for name, stats in found.items():
            self._remember(
                self.profiles_table, pk, name, stats.first_seen, stats.last_seen
            )
        return found

    def _remember(
        self, table: str, pk: str, sk: str, first: float, last: float
    ) -> None:
        if len(self._bounds) > 200_000:
            self._bounds.clear()
        key = (table, pk, sk)
        known = self._bounds.get(key)
        if known is not None:
            first, last = min(first, known[0]), max(last, known[1])
        self._bounds[key] = (first, last)

    def _write_trail(self, delta: BatchDelta) -> None:
        by_function: dict[str, list[str]] = {}
        header = json.dumps(
            {"type": "batch", "source": delta.function, "batch_id": delta.batch_id}
        )
        for inv in delta.invocations:
            doc = {
                "type": "invocation",
                **inv.to_json(),
                "event_digest": inv.event_digest,
            }
            lines = by_function.setdefault(inv.function, [header])
            lines.append(json.dumps(doc))
            for event in inv.trail_events():
                lines.append(
                    json.dumps({"type": "event", **event.to_json()}, default=str)
                )
        for function, lines in by_function.items():
            starts = [i.started_at for i in delta.invocations if i.function == function]
            day = utc(min(starts) if starts else delta.received_at, "%Y-%m-%d")
            if not day[:4].isdigit() or len(day) != 10:
                day = utc(delta.received_at, "%Y-%m-%d")
            self.s3.put_object(
                Bucket=self.bucket,
                Key=trail_key(function, day, delta.batch_id),
                Body=("\n".join(lines) + "\n").encode(),
                ContentType="application/x-ndjson",
            )

    def _counter_ops(self, delta: BatchDelta) -> list[dict[str, Any]]:
        table = self.profiles_table
        ops: list[dict[str, Any]] = []
        functions = sorted({f for f, _ in delta.versions})
        for function in functions:
            ops.append(
                self._update(
                    table, "functions", function, "SET seen = :t", {":t": _n(1)}
                )
            )
        for (f, v), d in sorted(delta.versions.items()):
            values = {
                ":i": _n(d.invocations),
                ":e": _n(d.events),
                ":ni": _n(d.inits),
                ":nc": _n(d.cold_starts),
                ":f": _n(d.first_seen),
                ":l": _n(d.last_seen),
                ":fn": _s(f),
            }
            expr = (
                "SET first_seen = if_not_exists(first_seen, :f), "
                "last_seen = if_not_exists(last_seen, :l), #fn = :fn"
            )
            if d.prior:
                expr += ", #pr = if_not_exists(#pr, :p)"
                values[":p"] = _s(d.prior)
            ops.append(
                self._update(
                    table,
                    f"v#{f}",
                    v,
                    expr + " ADD invocations :i, events :e, inits :ni, cold_starts :nc",
                    values,
                    names={"#fn": "function", **({"#pr": "prior"} if d.prior else {})},
                )
            )
            for metric, hist in sorted(d.rates.items()):
                adds = ", ".join(f"#b{b} :b{b}" for b in sorted(hist))
                ops.append(
                    self._update(
                        table,
                        f"r#{f}#{v}",
                        metric,
                        f"ADD {adds}",
                        {f":b{b}": _n(n) for b, n in hist.items()},
                        names={f"#b{b}": f"b{b}" for b in hist},
                    )
                )
        for (f, v, s), sd in sorted(delta.sigs.items()):
            ops.append(
                self._update(
                    table,
                    f"s#{f}#{v}",
                    s,
                    "SET kind = if_not_exists(kind, :k), "
                    "sensitivity = if_not_exists(sensitivity, :sen), "
                    "first_seen = if_not_exists(first_seen, :f), "
                    "last_seen = if_not_exists(last_seen, :l) "
                    "ADD #c :c, invocations :i, packages :p, cold :cold",
                    {
                        ":k": _s(sd.kind),
                        ":sen": _s(sd.sensitivity),
                        ":f": _n(sd.first_seen),
                        ":l": _n(sd.last_seen),
                        ":c": _n(sd.count),
                        ":i": _n(sd.invocations),
                        ":p": {"SS": sorted(sd.packages)},
                        ":cold": _n(sd.cold),
                    },
                    names={"#c": "count"},
                )
            )
        for name, n in sorted(delta.stats.items()):
            ops.append(
                self._update(
                    table,
                    "stats",
                    name,
                    "ADD #c :n",
                    {":n": _n(n)},
                    names={"#c": "count"},
                )
            )
        for (f, v, s), alert in sorted(delta.alerts.items()):
            ops.append(
                self._update(
                    self.alerts_table,
                    f,
                    f"{v}#{s}",
                    "SET doc = if_not_exists(doc, :d), "
                    "first_seen = if_not_exists(first_seen, :f), "
                    "last_seen = if_not_exists(last_seen, :l) "
                    "ADD #c :c, reasons :r",
                    {
                        ":d": _s(json.dumps(alert.to_json())),
                        ":f": _n(alert.first_seen),
                        ":l": _n(alert.last_seen),
                        ":c": _n(alert.count),
                        ":r": {"SS": sorted(set(alert.reasons))},
                    },
                    names={"#c": "count"},
                )
            )
        return ops

    def _fixup_ops(self, delta: BatchDelta) -> list[dict[str, Any]]:
        table = self.profiles_table
        ops: list[dict[str, Any]] = []

        def minmax(tbl: str, pk: str, sk: str, first: float, last: float) -> None:
            ops.append(
                self._update(
                    tbl,
                    pk,
                    sk,
                    "SET first_seen = :t",
                    {":t": _n(first)},
                    "first_seen > :t",
                )
            )
            ops.append(
                self._update(
                    tbl,
                    pk,
                    sk,
                    "SET last_seen = :t",
                    {":t": _n(last)},
                    "last_seen < :t",
                )
            )

        for (f, v), d in sorted(delta.versions.items()):
            minmax(table, f"v#{f}", v, d.first_seen, d.last_seen)
            if d.last_new_at is not None:
                ops.append(
                    self._update(
                        table,
                        f"v#{f}",
                        v,
                        "SET last_new_at = :t",
                        {":t": _n(d.last_new_at)},
                        "attribute_not_exists(last_new_at) OR last_new_at < :t",
                    )
                )
            if d.stable_at is not None:
                ops.append(
                    self._update(
                        table,
                        f"v#{f}",
                        v,
                        "SET stable_at = :t",
                        {":t": _n(d.stable_at)},
                        "attribute_not_exists(stable_at)",
                    )
                )
        for (f, v, s), sd in sorted(delta.sigs.items()):
            minmax(table, f"s#{f}#{v}", s, sd.first_seen, sd.last_seen)
        for (f, v, s), alert in sorted(delta.alerts.items()):
            minmax(self.alerts_table, f, f"{v}#{s}", alert.first_seen, alert.last_seen)
            rank = SEVERITIES.index(alert.severity)
            ops.append(
                self._update(
                    self.alerts_table,
                    f,
                    f"{v}#{s}",
                    "SET severity_rank = :r, score = :s",
                    {":r": _n(rank), ":s": _n(alert.score)},
                    "attribute_not_exists(severity_rank) OR severity_rank < :r",
                )
            )
            ops.append(
                self._update(
                    self.alerts_table,
                    f,
                    f"{v}#{s}",
                    "SET last_evidence = :e, last_evidence_ts = :t",
                    {
                        ":e": _s(json.dumps(alert.last_evidence)),
                        ":t": _n(alert.last_seen),
                    },
                    "attribute_not_exists(last_evidence_ts) OR last_evidence_ts <= :t",
                )
            )
        return ops

    def apply(self, delta: BatchDelta) -> ApplyResult:
        """Apply the batch exactly once (see the module docstring)."""
        marker_pk = f"b#{delta.function}"
        if self.has_batch(delta.function, delta.batch_id):
            return ApplyResult(stored=False)
        self._write_trail(delta)
        ops = self._counter_ops(delta)
        size = self.transaction_items - 1
        for index, start in enumerate(range(0, max(len(ops), 1), size)):
            chunk = ops[start : start + size]
            marker = {
                "Put": {
                    "TableName": self.profiles_table,
                    "Item": {
                        **self._key(marker_pk, f"{delta.batch_id}#c{index}"),
                        "at": _n(delta.received_at),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            self._transact([marker, *({"Update": op} for op in chunk)])
        for op in self._fixup_ops(delta):
            self._fixup(op)
        for (f, v, name), sd in delta.sigs.items():
            pk = f"s#{f}#{v}"
            self._remember(self.profiles_table, pk, name, sd.first_seen, sd.last_seen)
        for (f, v), vd in delta.versions.items():
            self._remember(
                self.profiles_table, f"v#{f}", v, vd.first_seen, vd.last_seen
            )
        new_alerts = self._claim_new_alerts(delta)
        try:
            self.ddb.put_item(
                TableName=self.profiles_table,
                Item={
                    **self._key(marker_pk, delta.batch_id),
                    "at": _n(delta.received_at),
                    "records": _n(len(delta.invocations)),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except Exception as exc:
            if _conditional_failed(exc):
                return ApplyResult(stored=False)
            raise
        self._mark_committed(delta.function, delta.batch_id)
        if new_alerts:
            self.count("alerts.new", len(new_alerts))
        return ApplyResult(stored=True, new_alerts=new_alerts)

    def _claim_new_alerts(self, delta: BatchDelta) -> list[Alert]:
        """The batch's alerts that it created: the first batch to claim each."""
        new: list[Alert] = []
        for (f, v, s), alert in sorted(delta.alerts.items()):
            try:
                self.ddb.update_item(
                    TableName=self.alerts_table,
                    Key=self._key(f, f"{v}#{s}"),
                    UpdateExpression="SET created_by = :b",
                    ConditionExpression=(
                        "attribute_not_exists(created_by) OR created_by = :b"
                    ),
                    ExpressionAttributeValues={":b": _s(delta.batch_id)},
                )
            except Exception as exc:
                if _conditional_failed(exc):
                    continue
                raise
            new.append(alert)
        return new

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (ADD)."""
        self.ddb.update_item(
            TableName=self.profiles_table,
            Key=self._key("stats", name),
            UpdateExpression="ADD #c :n",
            ExpressionAttributeNames={"#c": "count"},
            ExpressionAttributeValues={":n": _n(n)},
        )

    def stats(self) -> dict[str, int]:
        """Every counter."""
        return {
            item["sk"]["S"]: _int(item.get("count"))
            for item in self._query(self.profiles_table, "stats")
        }

    # -- queries ----------------------------------------------------------------

    def functions(self) -> list[str]:
        """Functions with a profile, sorted."""
        return sorted(
            item["sk"]["S"] for item in self._query(self.profiles_table, "functions")
        )

    def versions(self, function: str) -> list[VersionInfo]:
        """The function's versions, oldest first."""
        found = [
            self._version_of(item)
            for item in self._query(self.profiles_table, f"v#{function}")
        ]
        return sorted(found, key=lambda v: (v.first_seen, v.version))

    def version(self, function: str, version: str) -> VersionInfo | None:
        """One version."""
        item = self._get(self.profiles_table, f"v#{function}", version)
        if not item:
            return None
        info = self._version_of(item)
        self._remember(
            self.profiles_table,
            f"v#{function}",
            version,
            info.first_seen,
            info.last_seen,
        )
        return info

    def signatures(self, function: str, version: str) -> list[SigStats]:
        """All signatures of the version, sorted."""
        found = [
            self._sig_of(function, version, item)
            for item in self._query(self.profiles_table, f"s#{function}#{version}")
        ]
        return sorted(found, key=lambda s: s.signature)

    def rates(self, function: str, version: str) -> dict[str, dict[int, int]]:
        """Rate histograms of the version."""
        out: dict[str, dict[int, int]] = {}
        for item in self._query(self.profiles_table, f"r#{function}#{version}"):
            out[item["sk"]["S"]] = {
                int(name[1:]): _int(value)
                for name, value in item.items()
                if name.startswith("b") and name[1:].isdigit()
            }
        return out

    def _alert_of(self, item: dict[str, Any]) -> Alert:
        alert = Alert.from_json(json.loads(item["doc"]["S"]))
        alert.count = _int(item.get("count"))
        alert.first_seen = _num(item.get("first_seen")) or alert.first_seen
        alert.last_seen = _num(item.get("last_seen")) or alert.last_seen
        if "severity_rank" in item:
            alert.severity = SEVERITIES[_int(item["severity_rank"])]
            alert.score = _num(item.get("score")) or alert.score
        extra = sorted(set(item.get("reasons", {}).get("SS", [])) - set(alert.reasons))
        alert.reasons.extend(extra)
        if "last_evidence" in item:
            alert.last_evidence = json.loads(item["last_evidence"]["S"])
        return alert

    def alerts(
        self, since: float | None = None, function: str | None = None
    ) -> list[Alert]:
        """Alerts last seen at or after ``since``, most recent first."""
        if function is not None:
            items: Iterable[dict[str, Any]] = self._query(self.alerts_table, function)
        else:
            items = self._scan(self.alerts_table)
        found = [self._alert_of(item) for item in items if "doc" in item]
        if since is not None:
            found = [a for a in found if a.last_seen >= since]
        return sorted(found, key=lambda a: a.last_seen, reverse=True)

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self.ddb.scan(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _trail_lines(
        self, function: str, since: float | None
    ) -> Iterator[dict[str, Any]]:
        prefix = trail_prefix(function)
        floor = None
        if since is not None:
            floor = utc(since - 86400, "%Y-%m-%d")
        token: dict[str, Any] = {}
        while True:
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, **token)
            for obj in page.get("Contents", []):
                key = obj["Key"]
                day = key[len(prefix) :].split("/", 1)[0].removeprefix("date=")
                if floor is not None and day < floor:
                    continue
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                if not lines or lines[0].get("type") != "batch":
                    continue
                if not self._is_committed(lines[0]["source"], lines[0]["batch_id"]):
                    continue
                yield from lines[1:]
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _is_committed(self, function: str, batch_id: str) -> bool:
        key = (function, batch_id)
        if key not in self._committed:
            done = self.has_batch(function, batch_id)
            if not done:
                return False
            self._mark_committed(function, batch_id)
        return True

    def _mark_committed(self, function: str, batch_id: str) -> None:
        if len(self._committed) > 100_000:
            self._committed.clear()
        self._committed[(function, batch_id)] = True

    def invocations(
        self,
        function: str,
        request_id: str | None = None,
        since: float | None = None,
    ) -> list[Invocation]:
        """Invocation summaries from the trail objects, oldest first."""
        found = []
        for line in self._trail_lines(function, since):
            if line.get("type") != "invocation":
                continue
            if request_id is not None and line["request_id"] != request_id:
                continue
            if since is not None and line["started_at"] < since:
                continue
            found.append(
                Invocation(
                    line["function"],
                    line["version"],
                    line["request_id"],
                    line["batch_id"],
                    line["started_at"],
                    line["duration_ms"],
                    line["outcome"],
                    line["cold_start"],
                    line["events"],
                    line["dropped"],
                    list(line.get("event_digest") or []),
                )
            )
        return sorted(found, key=lambda i: i.started_at)

    def trail(
        self,
        function: str,
        request_id: str | None = None,
        since: float | None = None,
    ) -> list[TrailEvent]:
        """Events from the trail objects, in time order."""
        found = []
        for line in self._trail_lines(function, since):
            if line.get("type") != "event":
                continue
            if request_id is not None and line["request_id"] != request_id:
                continue
            if since is not None and line["ts"] < since:
                continue
            line.pop("type")
            found.append(TrailEvent(**line))
        return sorted(found, key=lambda e: (e.ts, e.seq))
