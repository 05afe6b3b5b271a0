"""A standard-library validator for the JSON Schema subset the policy schema uses.

The layer may not import ``jsonschema`` in the function's process, yet the shipped
``schemas/policy.schema.json`` must stay the one definition of a policy. This module
reads that file and checks documents against it with the 2020-12 keywords it uses:
``type``, ``const``, ``enum``, ``properties``, ``required``, ``additionalProperties``,
``propertyNames``, ``items``, ``minItems``, ``uniqueItems``, ``minLength``,
``pattern``, ``minimum``, ``maximum``, ``minProperties``, ``anyOf`` and ``$ref`` to
``#/$defs/...``. A schema that uses any other assertion keyword is refused when the
validator is built, so a schema change cannot be silently ignored.

Limitations: ``pattern`` is evaluated with Python's ``re`` (``re.search``), which
agrees with ECMA-262 for the patterns the schema contains but not for every
possible pattern; ``$ref`` resolves only local ``#/...`` pointers.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

Issue = tuple[str, str]

# Keywords that only annotate; they never reject a document.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "$defs", "examples"}
)
_ASSERTIONS = frozenset(
    {
        "type",
        "const",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "items",
        "minItems",
        "uniqueItems",
        "minLength",
        "pattern",
        "minimum",
        "maximum",
        "minProperties",
        "anyOf",
        "$ref",
    }
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_REPR_LIMIT = 80


def child_path(path: str, key: str | int) -> str:
    """Extend a JSON path (``$.a.b[0]``) by one property name or array index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def show(value: Any) -> str:
    """``repr`` of a found value, shortened so one issue stays one line."""
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def json_type(value: Any) -> str:
    """The JSON type name of a Python value (``integer`` for whole numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_type(value: Any, expected: str) -> bool:
    found = json_type(value)
    if expected == "number":
        return found in ("integer", "number")
    return found == expected


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it: ``1 == 1.0`` but ``true != 1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            json_equal(x, y) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _choices(values: list[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _suggest(found: Any, values: list[Any]) -> str:
    if not isinstance(found, str):
        return ""
    names = [v for v in values if isinstance(v, str)]
    close = difflib.get_close_matches(found, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SchemaValidator:
    """Checks JSON documents against one schema of the supported subset.

    Raises:
        ValueError: when built from a schema that uses an unsupported keyword.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._root = schema
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._check_supported(schema, "#")

    def _check_supported(self, node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                self._check_supported(item, f"{where}/{i}")
            return
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            if key not in _ASSERTIONS and key not in _ANNOTATIONS:
                raise ValueError(
                    f"schema keyword {key!r} at {where} is not supported by "
                    "palisade.policy.schema; expected one of "
                    f"{', '.join(sorted(_ASSERTIONS))}"
                )
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    self._check_supported(sub, f"{where}/{key}/{name}")
            elif key in ("items", "additionalProperties", "propertyNames", "anyOf"):
                self._check_supported(value, f"{where}/{key}")
            elif key == "pattern":
                self._patterns[value] = re.compile(value)

    def validate(self, document: Any) -> list[Issue]:
        """Return every ``(json_path, message)`` problem, in document order."""
        issues: list[Issue] = []
        self._validate(document, self._root, "$", issues)
        return issues

    def is_valid(self, document: Any) -> bool:
        return not self.validate(document)

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, found {ref!r}")
        node: Any = self._root
        for part in ref[1:].split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _validate(
        self, value: Any, schema: Mapping[str, Any], path: str, issues: list[Issue]
    ) -> None:
        if "$ref" in schema:
            self._validate(value, self._resolve(schema["$ref"]), path, issues)
        expected_type = schema.get("type")
        if expected_type is not None:
            types = (
                expected_type if isinstance(expected_type, list) else [expected_type]
            )
            if not any(_is_type(value, t) for t in types):
                issues.append(
                    (path, f"expected {' or '.join(types)}, found {show(value)}")
                )
                return
        if "const" in schema and not json_equal(value, schema["const"]):
            issues.append(
                (path, f"expected {json.dumps(schema['const'])}, found {show(value)}")
            )
        if "enum" in schema and not any(json_equal(value, v) for v in schema["enum"]):
            values = schema["enum"]
            issues.append(
                (
                    path,
                    f"expected one of {_choices(values)}, found {show(value)}"
                    f"{_suggest(value, values)}",
                )
            )
        if isinstance(value, dict):
            self._validate_object(value, schema, path, issues)
        elif isinstance(value, list):
            self._validate_array(value, schema, path, issues)
        elif isinstance(value, str):
            self._validate_string(value, schema, path, issues)
        elif json_type(value) in ("integer", "number"):
            if "minimum" in schema and value < schema["minimum"]:
                issues.append(
                    (
                        path,
                        f"expected at least {schema['minimum']}, found {show(value)}",
                    )
                )
            if "maximum" in schema and value > schema["maximum"]:
                issues.append(
                    (path, f"expected at most {schema['maximum']}, found {show(value)}")
                )
        if "anyOf" in schema:
            self._validate_any_of(value, schema["anyOf"], path, issues)

    def _validate_object(
        self,
        value: dict[Any, Any],
        schema: Mapping[str, Any],
        path: str,
        issues: list[Issue],
    ) -> None:
        for key in value:
            if not isinstance(key, str):
                issues.append(
                    (path, f"expected string property names, found {show(key)}")
                )
        for name in schema.get("required", ()):
            if name not in value:
                present = ", ".join(repr(k) for k in value) or "none"
                issues.append(
                    (
                        path,
                        f"missing required property {name!r} "
                        f"(found properties: {present})",
                    )
                )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            issues.append(
                (
                    path,
                    f"expected at least {schema['minProperties']} properties, "
                    f"found {show(value)}",
                )
            )
        properties: Mapping[str, Any] = schema.get("properties", {})
        names_schema = schema.get("propertyNames")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if not isinstance(key, str):
                continue
            where = child_path(path, key)
            if names_schema is not None:
                name_issues: list[Issue] = []
                self._validate(key, names_schema, where, name_issues)
                if name_issues:
                    allowed = names_schema.get("enum")
                    hint = (
                        f"expected one of {_choices(allowed)}{_suggest(key, allowed)}"
                        if allowed
                        else name_issues[0][1]
                    )
                    issues.append((where, f"property {key!r} not allowed; {hint}"))
                    continue
            if key in properties:
                self._validate(item, properties[key], where, issues)
            elif additional is False:
                allowed_names = list(properties)
                issues.append(
                    (
                        where,
                        f"unexpected property {key!r}; expected one of "
                        f"{_choices(allowed_names)}{_suggest(key, allowed_names)}",
                    )
                )
            elif isinstance(additional, Mapping):
                self._validate(item, additional, where, issues)

    def _validate_array(
        self,
        value: list[Any],
        schema: Mapping[str, Any],
        path: str,
        issues: list[Issue],
    ) -> None:
        if "minItems" in schema and len(value) < schema["minItems"]:
            issues.append(
                (
                    path,
                    f"expected at least {schema['minItems']} items, "
                    f"found {show(value)}",
                )
            )
        if schema.get("uniqueItems"):
            for i, item in enumerate(value):
                for j in range(i):
                    if json_equal(item, value[j]):
                        issues.append(
                            (
                                child_path(path, i),
                                f"expected unique items, found {show(item)} "
                                f"again (first at [{j}])",
                            )
                        )
                        break
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                self._validate(item, items, child_path(path, i), issues)

    def _validate_string(
        self, value: str, schema: Mapping[str, Any], path: str, issues: list[Issue]
    ) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            issues.append(
                (
                    path,
                    f"expected a string of at least {schema['minLength']} "
                    f"characters, found {show(value)}",
                )
            )
        pattern = schema.get("pattern")
        if pattern is not None and not self._patterns[pattern].search(value):
            issues.append(
                (path, f"expected a string matching {pattern!r}, found {show(value)}")
            )

    def _validate_any_of(
        self, value: Any, branches: list[Any], path: str, issues: list[Issue]
    ) -> None:
        failures: list[list[Issue]] = []
        for branch in branches:
            branch_issues: list[Issue] = []
            self._validate(value, branch, path, branch_issues)
            if not branch_issues:
                return
            failures.append(branch_issues)
        if all(set(b) == {"required"} for b in branches):
            names = [b["required"][0] for b in branches]
            found = ", ".join(repr(k) for k in value) if isinstance(value, dict) else ""
            issues.append(
                (
                    path,
                    f"expected at least one of the properties {_choices(names)}, "
                    f"found {'properties ' + found if found else show(value)}",
                )
            )
            return
        detail = "; ".join(f"{p}: {m}" for f in failures for p, m in f[:1])
        issues.append(
            (
                path,
                f"expected a value matching one of {len(branches)} alternatives, "
                f"found {show(value)} ({detail})",
            )
        )


@lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    """The shipped ``policy.schema.json`` (read once)."""
    text = (
        resources.files("palisade")
        .joinpath("schemas/policy.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def policy_validator() -> SchemaValidator:
    """A validator for the shipped policy schema (built once)."""
    return SchemaValidator(policy_schema())


def validate_policy(document: Any) -> list[Issue]:
    """Schema problems of a policy document, as ``(json_path, message)`` pairs."""
    return policy_validator().validate(document)
