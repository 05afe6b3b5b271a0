"""The JSON Schemas shared with the layer: record, batch and policy.

They live in the layer package (``palisade/schemas``). The extension finds that
directory without importing the package, so none of the layer's code runs here.

Records on the socket are checked by the faster ``records`` module; these
validators serve the policy and the tests.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from referencing import Registry

_NAMES = ("record", "batch", "policy")


def schema_dir() -> str:
    """The directory holding ``record.schema.json`` and its siblings.

    Raises:
        FileNotFoundError: the layer package is not on the path.
    """
    spec = importlib.util.find_spec("palisade")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [
            os.path.join(p, "schemas") for p in spec.submodule_search_locations
        ]
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "layer", "palisade", "schemas"))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "record.schema.json")):
            return os.path.normpath(candidate)
    raise FileNotFoundError(
        "cannot find palisade/schemas/record.schema.json; expected the layer "
        f"package on the path (looked in {candidates})"
    )


@functools.lru_cache(maxsize=1)
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    # Imported here: jsonschema costs ~60 ms, kept off the path to registering.
    from referencing import Registry, Resource

    base = schema_dir()
    documents: dict[str, dict[str, Any]] = {}
    registry: Registry = Registry()
    for name in _NAMES:
        with open(os.path.join(base, f"{name}.schema.json"), encoding="utf-8") as f:
            document = json.load(f)
        documents[name] = document
        resource = Resource.from_contents(document)
        registry = registry.with_resources(
            [(document["$id"], resource), (f"{name}.schema.json", resource)]
        )
    return registry, documents


@functools.lru_cache(maxsize=4)
def validator(name: str) -> Draft202012Validator:
    """A validator of the named schema (``record``, ``batch`` or ``policy``)."""
    from jsonschema import Draft202012Validator

    registry, documents = _registry()
    return Draft202012Validator(documents[name], registry=registry)


def problems(name: str, instance: Any, limit: int = 5) -> list[str]:
    """Describe up to ``limit`` ways ``instance`` breaks the schema ([] if valid)."""
    found = []
    for error in validator(name).iter_errors(instance):
        path = "/".join(str(part) for part in error.absolute_path) or "(root)"
        found.append(f"{path}: {error.message}")
        if len(found) >= limit:
            break
    return found
