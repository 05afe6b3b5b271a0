"""The hand-written record check agrees with jsonschema on valid and mutated
records, so the fast path never accepts what the schema refuses."""

from __future__ import annotations

import copy
import itertools

import pytest
from analyzer_records import Recorder
from palisade_analyzer.schemas import (
    envelope_validator,
    first_error,
    record_is_valid,
    record_validator,
    validator,
)

BAD_VALUES = [None, True, 0, 1.5, -1, "", "x", [], {}, 2.0, "palisade.record/1"]


def _mutations(record):
    yield record
    for key in list(record):
        broken = copy.deepcopy(record)
        del broken[key]
        yield broken
        for value in BAD_VALUES:
            changed = copy.deepcopy(record)
            changed[key] = value
            yield changed
    event = record["events"][0]
    for key in list(event):
        broken = copy.deepcopy(record)
        del broken["events"][0][key]
        yield broken
        for value in BAD_VALUES:
            changed = copy.deepcopy(record)
            changed["events"][0][key] = value
            yield changed
    for extra in ("outcome", "mode", "error_type", "policy_id", "errors", "python"):
        for value in [*BAD_VALUES, "success", "block", "init"]:
            changed = copy.deepcopy(record)
            changed[extra] = value
            yield changed
    too_many = copy.deepcopy(record)
    too_many["event_digest"] = [f"value-{i}" for i in range(65)]
    yield too_many
    for paths in (
        {"task_root": "/var/task", "tmp": "/tmp"},
        {"task_root": "task"},
        {"tmp": 7},
        *BAD_VALUES,
    ):
        changed = copy.deepcopy(record)
        changed["paths"] = paths
        yield changed


def test_fast_check_agrees_with_jsonschema():
    """For every mutation the fast check says valid exactly when jsonschema does."""
    rec = Recorder()
    record = rec.benign(1)
    record.update(mode="monitor", policy_id=None, errors=0, layer_version="0.1.0")
    checker = record_validator()
    seen = 0
    for candidate in itertools.islice(_mutations(record), 5000):
        seen += 1
        valid = first_error(checker, candidate) is None
        assert record_is_valid(candidate) is valid, candidate
    assert seen > 300


@pytest.mark.parametrize("name", ["batch.schema.json", "policy.schema.json"])
def test_shared_schemas_resolve_through_the_registry(name):
    """Cross-file $refs resolve: a batch with a record, a policy with rules."""
    rec = Recorder()
    if name == "batch.schema.json":
        doc = rec.batch([rec.benign(1)])
        assert first_error(validator(name), doc) is None
        doc["records"][0]["events"][0]["kind"] = "telepathy"
        assert "telepathy" in first_error(validator(name), doc)
        assert first_error(envelope_validator(), doc) is None
    else:
        doc = {"version": 1, "file": {"allow": [{"path": "/tmp/*"}]}}
        assert first_error(validator(name), doc) is None
        doc["file"]["allow"][0]["path"] = "relative"
        assert first_error(validator(name), doc) is not None


def _envelope_mutations(batch):
    yield batch
    for key in (
        "schema",
        "batch_id",
        "sent_at",
        "source",
        "records",
        "platform",
        "outside",
        "drops",
    ):
        broken = copy.deepcopy(batch)
        broken.pop(key, None)
        yield broken
        for value in [
            *BAD_VALUES,
            "x" * 7,
            "x" * 129,
            [{"type": "t"}],
            {"a": -1},
            {"a": 1},
        ]:
            changed = copy.deepcopy(batch)
            changed[key] = value
            yield changed
    for key in ("function", "version", "region", "sandbox_id"):
        for value in BAD_VALUES:
            changed = copy.deepcopy(batch)
            changed["source"][key] = value
            yield changed
    for key in ("kind", "target", "observed_at", "detail", "request_id"):
        for value in [*BAD_VALUES, "library", "process"]:
            changed = copy.deepcopy(batch)
            changed["outside"][0][key] = value
            yield changed
    for value in [*BAD_VALUES, {"type": 1}, {"type": "x", "time": 3}]:
        changed = copy.deepcopy(batch)
        changed["platform"] = [value]
        yield changed


def test_fast_envelope_check_agrees_with_jsonschema():
    """The batch envelope's fast check says valid exactly when jsonschema does."""
    from palisade_analyzer.schemas import envelope_is_valid

    rec = Recorder()
    batch = rec.batch([rec.benign(1)])
    batch["platform"] = [{"type": "platform.report", "time": "t", "record": {}}]
    batch["outside"] = [
        {
            "kind": "process",
            "target": "/bin/x",
            "detail": {},
            "observed_at": 1.0,
            "request_id": None,
        }
    ]
    batch["drops"] = {"buffer-full": 2}
    checker = envelope_validator()
    seen = 0
    for candidate in _envelope_mutations(batch):
        seen += 1
        valid = first_error(checker, candidate) is None
        assert envelope_is_valid(candidate) is valid, candidate
    assert seen > 200
