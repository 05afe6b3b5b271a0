"""The shared JSON Schemas (batch, record, policy), loaded once with a registry.

The schemas live in the layer package (``palisade/schemas``) and reference each
other by file name (``record.schema.json``), so every validator is built against
one :class:`referencing.Registry` holding all three.
"""

from __future__ import annotations

import functools
import json
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
