"""The shared JSON Schemas (batch, record, policy), loaded once with a registry.

The schemas live in the layer package (``palisade/schemas``) and reference each
other by file name (``record.schema.json``), so every validator is built against
one :class:`referencing.Registry` holding all three.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_FILES = ("batch.schema.json", "record.schema.json", "policy.schema.json")


@functools.cache
def _documents() -> dict[str, dict[str, Any]]:
    folder = resources.files("palisade") / "schemas"
    return {
        name: json.loads((folder / name).read_text(encoding="utf-8"))
        for name in SCHEMA_FILES
    }


@functools.cache
def registry() -> Registry[Any]:
    """A registry resolving each schema by its ``$id`` and by its file name."""
    pairs = []
    for name, doc in _documents().items():
        resource = Resource.from_contents(doc)
        pairs.append((name, resource))
        pairs.append((doc["$id"], resource))
    return Registry().with_resources(pairs)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The validator of one schema file (``batch.schema.json`` ...)."""
    return Draft202012Validator(_documents()[name], registry=registry())


@functools.cache
def envelope_validator() -> Draft202012Validator:
    """The batch schema with ``records`` items unchecked.

    Records are validated one by one so that one bad record is rejected alone.
    """
    doc = json.loads(json.dumps(_documents()["batch.schema.json"]))
    doc["properties"]["records"] = {"type": "array"}
    return Draft202012Validator(doc, registry=registry())


@functools.cache
def record_validator() -> Draft202012Validator:
    """The validator of one invocation record."""
    return validator("record.schema.json")


def first_error(validator_: Draft202012Validator, instance: Any) -> str | None:
    """The first schema violation as ``path: message``, or None when valid."""
    best = None
    for error in validator_.iter_errors(instance):
        if best is None or list(error.absolute_path) < list(best.absolute_path):
            best = error
    if best is None:
        return None
    path = "/".join(str(p) for p in best.absolute_path) or "(root)"
    return f"{path}: {best.message}"


# -- the hot path: a hand-written check of record.schema.json ------------------------
#
# jsonschema costs ~100 us per event; this check is the same schema written out
# (tests compare the two on many mutated records). It only says "valid"; anything
# it refuses goes to jsonschema for the message, so it can never accept more.

_KINDS = frozenset(("file", "process", "network", "dns", "aws", "code", "env"))
_VERDICTS = frozenset(("allowed", "alerted", "blocked"))
_OUTCOMES = frozenset(("success", "error", "blocked", "init"))
_MODES = frozenset(("monitor", "alert", "block"))
_RECORD_REQUIRED = (
    "schema",
    "function",
    "version",
    "request_id",
    "cold_start",
    "duration_ms",
    "events",
    "dropped",
)
_EVENT_REQUIRED = frozenset(
    ("seq", "ts", "kind", "op", "target", "detail", "module", "verdict", "rule")
).union(("request_id",))


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _integer(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and value.is_integer())


def _text(value: Any) -> bool:
    return type(value) is str and len(value) >= 1


def _one_of(value: Any, choices: frozenset[str]) -> bool:
    return type(value) is str and value in choices


def _event_ok(event: Any) -> bool:
    if type(event) is not dict or not _EVENT_REQUIRED.issubset(event):
        return False
    seq = event["seq"]
    return (
        _integer(seq)
        and seq >= 0
        and _number(event["ts"])
        and _one_of(event["kind"], _KINDS)
        and _text(event["op"])
        and type(event["target"]) is str
        and type(event["detail"]) is dict
        and _text(event["module"])
        and _one_of(event["verdict"], _VERDICTS)
        and _text(event["rule"])
        and _text(event["request_id"])
    )


def record_is_valid(record: Any) -> bool:
    """True only for records that match record.schema.json (fast path)."""
    if type(record) is not dict:
        return False
    for name in _RECORD_REQUIRED:
        if name not in record:
            return False
    get = record.get
    duration, dropped = record["duration_ms"], record["dropped"]
    ok = (
        type(record["schema"]) is str
        and record["schema"] == "palisade.record/1"
        and _text(record["function"])
        and _text(record["version"])
        and _text(record["request_id"])
        and type(record["cold_start"]) is bool
        and _number(duration)
        and duration >= 0
        and _integer(dropped)
        and dropped >= 0
        and type(record["events"]) is list
    )
    if not ok:
        return False
    if "started_at" in record and not _number(record["started_at"]):
        return False
    if "outcome" in record and not _one_of(get("outcome"), _OUTCOMES):
        return False
    for name in ("error_type", "policy_id"):
        if name in record and not (record[name] is None or type(record[name]) is str):
            return False
    if "mode" in record and not _one_of(get("mode"), _MODES):
        return False
    for name in ("layer_version", "python"):
        if name in record and type(record[name]) is not str:
            return False
    if "event_digest" in record:
        digest = record["event_digest"]
        if type(digest) is not list or len(digest) > 64:
            return False
        if not all(type(s) is str for s in digest):
            return False
    if "errors" in record:
        errors = record["errors"]
        if not (_integer(errors) and errors >= 0):
            return False
    if "paths" in record and not paths_ok(record["paths"]):
        return False
    return all(_event_ok(event) for event in record["events"])


def paths_ok(paths: Any) -> bool:
    """record.schema.json's ``paths``: an object whose known roots are absolute."""
    if type(paths) is not dict:
        return False
    for name in ("task_root", "tmp"):
        if name in paths:
            value = paths[name]
            if type(value) is not str or not value.startswith("/"):
                return False
    return True


# batch.schema.json's batch_id pattern: the id names trail files and objects.
_BATCH_ID = re.compile(r"[A-Za-z0-9._:-]+")
_OUTSIDE_KINDS = frozenset(("process", "network", "library"))
_SOURCE_TEXT = ("region", "sandbox_id", "extension_version")


def _platform_ok(item: Any) -> bool:
    if type(item) is not dict or type(item.get("type")) is not str:
        return False
    return "time" not in item or type(item["time"]) is str


def _outside_ok(item: Any) -> bool:
    if type(item) is not dict:
        return False
    if not ("kind" in item and "target" in item and "observed_at" in item):
        return False
    if not _one_of(item["kind"], _OUTSIDE_KINDS) or type(item["target"]) is not str:
        return False
    if not _number(item["observed_at"]):
        return False
    if "detail" in item and type(item["detail"]) is not dict:
        return False
    return (
        "request_id" not in item
        or item["request_id"] is None
        or (type(item["request_id"]) is str)
    )


def envelope_is_valid(batch: Any) -> bool:
    """True only for batches whose envelope matches batch.schema.json (fast path)."""
    if type(batch) is not dict:
        return False
    for name in ("schema", "batch_id", "sent_at", "source", "records"):
        if name not in batch:
            return False
    batch_id, source = batch["batch_id"], batch["source"]
    ok = (
        type(batch["schema"]) is str
        and batch["schema"] == "palisade.batch/1"
        and type(batch_id) is str
        and 8 <= len(batch_id) <= 128
        and _BATCH_ID.fullmatch(batch_id) is not None
        and _number(batch["sent_at"])
        and type(source) is dict
        and _text(source.get("function"))
        and _text(source.get("version"))
        and all(type(source[k]) is str for k in _SOURCE_TEXT if k in source)
        and type(batch["records"]) is list
    )
    if not ok:
        return False
    if "platform" in batch:
        platform = batch["platform"]
        if type(platform) is not list or not all(map(_platform_ok, platform)):
            return False
    if "outside" in batch:
        outside = batch["outside"]
        if type(outside) is not list or not all(map(_outside_ok, outside)):
            return False
    if "drops" in batch:
        drops = batch["drops"]
        if type(drops) is not dict:
            return False
        for value in drops.values():
            if not (_integer(value) and value >= 0):
                return False
    return True
