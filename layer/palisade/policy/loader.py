"""Read a policy document from a file, inline text or a dict, and validate it.

YAML is read only when PyYAML is importable (it is imported lazily, at load, never
at import time of ``palisade``); otherwise a YAML policy is refused with a message
that says how to convert it to JSON. When PyYAML comes from the function's own
dependencies, loading a YAML policy imports that copy early, before the handler.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from palisade.errors import PolicyError
from palisade.policy.matching import canonical_ip, split_hostport
from palisade.policy.schema import Issue, child_path, show, validate_policy

PolicySource = str | bytes | os.PathLike[str] | Mapping[str, Any]

PATH_VARIABLES = ("$TASK_ROOT", "$TMP", "$HOME")
_JSON_SUFFIXES = (".json",)
_YAML_SUFFIXES = (".yaml", ".yml")
_RULE_KINDS = ("file", "process", "network", "dns", "aws", "code", "env")


def load_policy_document(source: PolicySource) -> dict[str, Any]:
    """Return a validated policy document (a fresh dict) from ``source``.

    Args:
        source: a path (``.json``, ``.yaml``/``.yml``, or decided by content),
            inline JSON text, inline YAML text, or a mapping.

    Raises:
        PolicyError: unreadable, unparsable or invalid; ``.issues`` lists every
            ``(json_path, message)`` problem.
    """
    label, document = _read(source)
    issues = json_value_issues(document, "$")
    if not issues:
        issues = validate_policy(document)
    if not issues:
        issues = semantic_issues(document)
    if issues:
        first = f"{issues[0][0]}: {issues[0][1]}"
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise PolicyError(f"policy {label} is invalid: {first}{more}", issues)
    result: dict[str, Any] = document
    return result


def canonical_json(document: Mapping[str, Any]) -> str:
    """The canonical JSON text of a document: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def policy_id(document: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the document's canonical JSON."""
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()[:16]


def _read(source: PolicySource) -> tuple[str, Any]:
    if isinstance(source, Mapping):
        return "document", copy.deepcopy(dict(source))
    if isinstance(source, os.PathLike):
        return _read_file(os.fspath(source))
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"policy text is not UTF-8: {exc}; expected UTF-8 JSON or YAML",
                [("$", f"expected UTF-8 text, found undecodable bytes ({exc})")],
            ) from exc
    if not isinstance(source, str):
        raise PolicyError(
            "policy source must be a path, JSON or YAML text, or a dict; "
            f"found {type(source).__name__}",
            [("$", f"expected a path, text or dict, found {show(source)}")],
        )
    text = source.strip()
    if not text:
        raise PolicyError(
            "policy source is empty; expected a path, JSON or YAML text",
            [("$", "expected a policy document, found empty text")],
        )
    if "\n" not in text and not text.startswith(("{", "[")):
        if os.path.exists(text) or text.startswith(("/", "./", "../", "~")):
            return _read_file(os.path.expanduser(text))
        if text.endswith(_JSON_SUFFIXES + _YAML_SUFFIXES):
            return _read_file(text)
    if text.startswith(("{", "[")):
        return "inline JSON", _parse_json(text, "inline JSON")
    document = _parse_yaml(text, "inline YAML")
    if "\n" not in text and not isinstance(document, (dict, list)):
        raise PolicyError(
            f"policy source {text!r} is neither an existing file nor a JSON or "
            "YAML document; expected a path to a policy file or the policy itself",
            [("$", f"expected a file path or a policy document, found {show(text)}")],
        )
    return "inline YAML", document


def _read_file(path: str) -> tuple[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError as exc:
        raise PolicyError(
            f"policy file {path!r} not found; expected a readable JSON or YAML file",
            [("$", f"expected a readable file, found no file at {path!r}")],
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            f"policy file {path!r} cannot be read: {exc}",
            [("$", f"expected a readable UTF-8 file, found {exc}")],
        ) from exc
    label = repr(path)
    if path.endswith(_JSON_SUFFIXES):
        return label, _parse_json(text, label)
    if path.endswith(_YAML_SUFFIXES):
        return label, _parse_yaml(text, label)
    if text.lstrip().startswith(("{", "[")):
        return label, _parse_json(text, label)
    return label, _parse_yaml(text, label)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate property {key!r}")
        result[key] = value
    return result


def _parse_json(text: str, label: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise PolicyError(
            f"policy {label} is not valid JSON ({exc.msg} at {where})",
            [("$", f"expected JSON, found a syntax error at {where}: {exc.msg}")],
        ) from exc
    except ValueError as exc:
        raise PolicyError(
            f"policy {label} is not valid JSON ({exc})",
            [("$", f"expected each property once, found {exc}")],
        ) from exc


def _parse_yaml(text: str, label: str) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise PolicyError(
            f"policy {label} looks like YAML but PyYAML is not importable here; "
            "convert it to JSON with `palisade policy validate --json FILE` and "
            "use the JSON file instead",
            [("$", "expected JSON (PyYAML is not installed), found YAML text")],
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(
            f"policy {label} is not valid YAML ({problem}{where})",
            [("$", f"expected YAML, found a syntax error{where}: {problem}")],
        ) from exc


def json_value_issues(value: Any, path: str) -> list[Issue]:
    """Values YAML can produce that JSON cannot hold (dates, sets, NaN, ...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return []
    if isinstance(value, float):
        if math.isfinite(value):
            return []
        return [(path, f"expected a finite number, found {show(value)}")]
    if isinstance(value, list):
        issues: list[Issue] = []
        for i, item in enumerate(value):
            issues += json_value_issues(item, child_path(path, i))
        return issues
    if isinstance(value, dict):
        issues = []
        for key, item in value.items():
            if not isinstance(key, str):
                issues.append(
                    (path, f"expected string property names, found {show(key)}")
                )
                continue
            issues += json_value_issues(item, child_path(path, key))
        return issues
    return [
        (
            path,
            "expected a JSON value (string, number, boolean, null, array, object), "
            f"found {type(value).__name__} {show(value)}; quote it in YAML",
        )
    ]


def semantic_issues(document: Mapping[str, Any]) -> list[Issue]:
    """Problems the schema cannot express: path variables, regexes, addresses."""
    issues: list[Issue] = []
    for kind in _RULE_KINDS:
        section = document.get(kind)
        if not isinstance(section, Mapping):
            continue
        for list_name in ("allow", "deny"):
            for i, rule in enumerate(section.get(list_name) or ()):
                where = child_path(child_path(f"$.{kind}", list_name), i)
                issues += _rule_issues(kind, rule, where)
    return issues


def _rule_issues(kind: str, rule: Mapping[str, Any], where: str) -> list[Issue]:
    issues: list[Issue] = []
    if kind in ("file", "process"):
        key = "path" if kind == "file" else "exec"
        value = rule[key]
        if value.startswith("$"):
            variable = re.match(r"^\$[A-Za-z_]+", value)
            name = variable.group(0) if variable else value
            rest = value[len(name) :]
            if name not in PATH_VARIABLES or (rest and not rest.startswith("/")):
                issues.append(
                    (
                        child_path(where, key),
                        f"expected a path starting with / or one of "
                        f"{', '.join(PATH_VARIABLES)} followed by /, "
                        f"found {show(value)}",
                    )
                )
    if kind == "process" and "argv" in rule:
        try:
            re.compile(rule["argv"])
        except re.error as exc:
            issues.append(
                (
                    child_path(where, "argv"),
                    f"expected a regular expression, found {show(rule['argv'])} "
                    f"({exc})",
                )
            )
    if kind == "network":
        if "cidr" in rule:
            try:
                ipaddress.ip_network(rule["cidr"], strict=False)
            except ValueError as exc:
                issues.append(
                    (
                        child_path(where, "cidr"),
                        f"expected an IPv4 or IPv6 network such as 10.0.0.0/8, "
                        f"found {show(rule['cidr'])} ({exc})",
                    )
                )
        if "host" in rule:
            issues += _name_issues(rule["host"], child_path(where, "host"), ip_ok=True)
    if kind == "dns":
        issues += _name_issues(rule["name"], child_path(where, "name"), ip_ok=True)
    return issues


def _name_issues(value: str, where: str, *, ip_ok: bool) -> list[Issue]:
    if ip_ok and canonical_ip(value) is not None:
        return []
    body = value[2:] if value.startswith("*.") else value
    _host, port = split_hostport(body)
    if "*" in body or port is not None or not body or "/" in body or " " in body:
        return [
            (
                where,
                "expected a host name with an optional leading '*.', or an IP "
                f"address (no port, no other wildcard), found {show(value)}",
            )
        ]
    return []
