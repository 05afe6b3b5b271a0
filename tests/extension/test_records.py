"""The fast record check agrees with record.schema.json (via jsonschema)."""

from __future__ import annotations

import copy

import pytest
from ext_fakes import make_event, make_record
from palisade_extension import records, schemas


def _valid():
    return make_record(
        "req-1",
        events=[
            make_event("network", "connect", "a:443", "req-1", seq=0, ip="1.2.3.4"),
            make_event("file", "read", "/etc/hosts", "req-1", seq=1),
        ],
        error_type=None,
        mode="alert",
        policy_id=None,
        layer_version="0.1.0",
        python="3.12.1",
        event_digest=["abcd"],
        errors=0,
    )


def _set(path, value):
    def mutate(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return record

    return mutate


def _delete(path):
    def mutate(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return record

    return mutate


MUTATIONS = [
    ("valid", lambda r: r),
    ("extra field kept", _set(("transport_fallbacks",), 0)),
    ("wrong schema", _set(("schema",), "palisade.record/2")),
    ("empty function", _set(("function",), "")),
    ("no version", _delete(("version",))),
    ("no request id", _delete(("request_id",))),
    ("cold_start int", _set(("cold_start",), 1)),
    ("negative duration", _set(("duration_ms",), -1)),
    ("duration bool", _set(("duration_ms",), True)),
    ("events not list", _set(("events",), {})),
    ("dropped float", _set(("dropped",), 1.5)),
    ("dropped negative", _set(("dropped",), -1)),
    ("bad outcome", _set(("outcome",), "maybe")),
    ("bad mode", _set(("mode",), "strict")),
    ("error_type int", _set(("error_type",), 3)),
    ("policy_id string", _set(("policy_id",), "abc")),
    ("digest too long", _set(("event_digest",), ["abcd"] * 65)),
    ("digest not strings", _set(("event_digest",), [1])),
    ("errors negative", _set(("errors",), -2)),
    ("started_at string", _set(("started_at",), "now")),
    ("event not object", _set(("events", 0), "x")),
    ("event without seq", _delete(("events", 0, "seq"))),
    ("event seq negative", _set(("events", 0, "seq"), -1)),
    ("event seq bool", _set(("events", 0, "seq"), True)),
    ("event ts string", _set(("events", 0, "ts"), "x")),
    ("event bad kind", _set(("events", 1, "kind"), "gpu")),
    ("event kind list", _set(("events", 1, "kind"), ["file"])),
    ("event empty op", _set(("events", 0, "op"), "")),
    ("event target int", _set(("events", 0, "target"), 5)),
    ("event empty target", _set(("events", 0, "target"), "")),
    ("event detail list", _set(("events", 0, "detail"), [])),
    ("event bad verdict", _set(("events", 0, "verdict"), "denied")),
    ("event empty rule", _set(("events", 0, "rule"), "")),
    ("event empty module", _set(("events", 0, "module"), "")),
    ("event no request id", _delete(("events", 1, "request_id"))),
    ("paths valid", _set(("paths",), {"task_root": "/var/task", "tmp": "/tmp"})),
    ("paths not object", _set(("paths",), 5)),
    ("paths relative root", _set(("paths",), {"task_root": "task"})),
    ("paths tmp not string", _set(("paths",), {"tmp": 7})),
]


@pytest.mark.parametrize("name,mutate", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_fast_check_agrees_with_jsonschema(name, mutate):
    """For each variant, the fast check finds a problem exactly when jsonschema does."""
    record = mutate(copy.deepcopy(_valid()))
    assert bool(records.problems(record)) == bool(schemas.problems("record", record))


def test_not_an_object():
    """A record that is not an object is one problem, named."""
    assert records.problems([1]) == ["(root): list is not of type 'object'"]


def test_problems_name_the_path():
    """Problems say where: the event index and field."""
    record = _valid()
    record["events"][1]["kind"] = "gpu"
    assert records.problems(record)[0].startswith("events/1/kind:")
