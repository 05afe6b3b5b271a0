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
