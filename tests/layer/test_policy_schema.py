"""The standard-library schema validator: jsonschema's verdicts, precise errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from palisade.errors import PolicyError
from palisade.policy import load_policy_document, validate_policy
from palisade.policy.schema import SchemaValidator, json_equal, policy_schema

FULL: dict[str, Any] = {
    "version": 1,
    "mode": "alert",
    "function": "orders-api",
    "description": "every section used once",
    "file": {
        "mode": "block",
        "comment": "files",
        "allow": [
            {"path": "$TMP/out/*.png", "access": ["write", "create"]},
            {"path": "/data/**", "packages": ["app"], "comment": "input"},
        ],
        "deny": [{"path": "/data/secret/**"}],
    },
    "process": {"allow": [{"exec": "convert", "argv": "-resize \\S+ \\S+ \\S+"}]},
    "network": {
        "allow": [
            {"host": "*.example.com", "ports": [443], "protocol": "tcp"},
            {"cidr": "10.0.0.0/8", "ops": ["connect"]},
            {"ports": [53]},
        ],
        "deny": [{"host": "bad.example.com"}],
    },
    "dns": {"allow": [{"name": "*.internal"}]},
    "aws": {"allow": [{"call": "dynamodb:PutItem:orders"}, {"call": "s3:Get*"}]},
    "code": {"allow": [{"op": "exec", "target": "<string>", "packages": ["attrs"]}]},
    "env": {"allow": [{"path": "/proc/1/status"}]},
    "builtin": {"disable": ["tmp-exec"]},
    "evidence": {"count": 3, "first_seen": "2026-01-01"},
}

WRONG_VALUES: list[Any] = [None, True, 1, 1.5, "x", "", [], ["x"], {}, {"x": 1}, -1]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to every value in a document (objects, arrays and scalars)."""
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths += _leaves(item, (*path, i))
    return paths


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    result = copy.deepcopy(document)
    node = result
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return result


def _corpus() -> list[Any]:
    """Valid documents and systematic mutations of them (most invalid)."""
    docs: list[Any] = [
        {"version": 1},
        {"version": 1.0},
        {"version": 1, "network": {"allow": []}},
        {"version": 1, "file": {}},
        {"version": 1, "builtin": {}},
        {"version": 1, "evidence": {"anything": [1, {"x": None}]}},
        FULL,
        [],
        "version: 1",
        None,
        {"version": True},
        {"version": 1, "network": {"allow": [{"protocol": "udp"}]}},
        {"version": 1, "network": {"allow": [{"ports": [1, 1.0]}]}},
        {"version": 1, "builtin": {"disable": ["tmp-exec", "tmp-exec"]}},
        {"version": 1, "aws": {"allow": [{"call": "s3:Get:bucket:key/with:colons"}]}},
        {"version": 1, "aws": {"allow": [{"call": "s3::x"}]}},
    ]
    for path in _leaves(FULL):
        for wrong in WRONG_VALUES:
            docs.append(_replace(FULL, path, wrong))
        parent = FULL
        for step in path:
            parent = parent[step]
        if isinstance(parent, dict):
            docs.append(_replace(FULL, path, {**parent, "unexpected": 1}))
            for key in parent:
                docs.append(
                    _replace(FULL, path, {k: v for k, v in parent.items() if k != key})
                )
    return docs


CORPUS = _corpus()


def test_corpus_has_both_outcomes() -> None:
    """The cross-check corpus holds valid and invalid documents in quantity."""
    verdicts = [not validate_policy(doc) for doc in CORPUS]
    assert sum(verdicts) >= 20
    assert len(verdicts) - sum(verdicts) >= 200


def test_same_verdict_as_jsonschema() -> None:
    """GIVEN the shipped schema WHEN both validators check the corpus THEN they
    accept and reject exactly the same documents."""
    jsonschema = pytest.importorskip("jsonschema")
    reference = jsonschema.Draft202012Validator(policy_schema())
    disagreements = []
    for doc in CORPUS:
        ours = not validate_policy(doc)
        theirs = reference.is_valid(doc)
        if ours != theirs:
            disagreements.append((doc, ours, theirs))
    assert disagreements == []


def test_schema_itself_is_valid_2020_12() -> None:
    """The shipped schema is a valid 2020-12 schema."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(policy_schema())


def test_unsupported_keyword_is_refused() -> None:
    """A schema keyword the validator cannot check is an error, not ignored."""
    with pytest.raises(ValueError, match="'format'"):
        SchemaValidator({"type": "string", "format": "email"})


def test_json_equality_rules() -> None:
    """1 equals 1.0 but not true, as JSON Schema's const/enum/uniqueItems need."""
    assert json_equal(1, 1.0)
    assert not json_equal(1, True)
    assert not json_equal([1], [True])
    assert json_equal({"a": [1]}, {"a": [1.0]})


def _doc(**sections: Any) -> dict[str, Any]:
    return {"version": 1, **sections}


ERROR_CASES: list[tuple[Any, str, str]] = [
    ("[1]", "$", "expected object, found [1]"),
    ({}, "$", "missing required property 'version'"),
    ({"version": 2}, "$.version", "expected 1, found 2"),
    (_doc(mode="blok"), "$.mode", "found 'blok' (did you mean 'block'?)"),
    (_doc(netwrk={}), "$.netwrk", "unexpected property 'netwrk'"),
    (_doc(function=""), "$.function", "at least 1 characters, found ''"),
    (_doc(description=5), "$.description", "expected string, found 5"),
    (_doc(file={"allwo": []}), "$.file.allwo", "property 'allwo' not allowed"),
    (_doc(file={"mode": "x"}), "$.file.mode", "expected one of"),
    (_doc(file={"comment": 1}), "$.file.comment", "expected string, found 1"),
    (_doc(file={"allow": {}}), "$.file.allow", "expected array, found {}"),
    (_doc(file={"allow": [{}]}), "$.file.allow[0]", "missing required property 'path'"),
    (
        _doc(file={"allow": [{"path": "tmp/x"}]}),
        "$.file.allow[0].path",
        "matching '^(/|\\\\$)', found 'tmp/x'",
    ),
    (
        _doc(file={"allow": [{"path": "/x", "access": ["read", "exec"]}]}),
        "$.file.allow[0].access[1]",
        "found 'exec'",
    ),
    (
        _doc(file={"allow": [{"path": "/x", "access": ["read", "read"]}]}),
        "$.file.allow[0].access[1]",
        "expected unique items, found 'read' again (first at [0])",
    ),
    (
        _doc(file={"allow": [{"path": "/x", "access": []}]}),
        "$.file.allow[0].access",
        "expected at least 1 items, found []",
    ),
    (
        _doc(file={"deny": [{"path": "/x", "packages": [""]}]}),
        "$.file.deny[0].packages[0]",
        "found ''",
    ),
    (
        _doc(file={"allow": [{"path": "/x", "user": "root"}]}),
        "$.file.allow[0].user",
        "unexpected property 'user'",
    ),
    (
        _doc(network={"allow": [{"ports": [443, 70000]}]}),
        "$.network.allow[0].ports[1]",
        "expected at most 65535, found 70000",
    ),
    (
        _doc(network={"allow": [{"ports": [-1]}]}),
        "$.network.allow[0].ports[0]",
        "expected at least 0, found -1",
    ),
    (
        _doc(network={"allow": [{"ports": ["443"]}]}),
        "$.network.allow[0].ports[0]",
        "expected integer, found '443'",
    ),
    (
        _doc(network={"allow": [{"ports": [True]}]}),
        "$.network.allow[0].ports[0]",
        "expected integer, found True",
    ),
    (
        _doc(network={"allow": [{}]}),
        "$.network.allow[0]",
        "expected at least 1 properties, found {}",
    ),
    (
        _doc(network={"allow": [{"protocol": "tcp"}]}),
        "$.network.allow[0]",
        'expected at least one of the properties "host", "cidr", "ports"',
    ),
    (
        _doc(network={"allow": [{"host": "a.com", "protocol": "icmp"}]}),
        "$.network.allow[0].protocol",
        "found 'icmp'",
    ),
    (
        _doc(network={"allow": [{"host": "a.com", "ops": ["accept"]}]}),
        "$.network.allow[0].ops[0]",
        "found 'accept'",
    ),
    (_doc(dns={"allow": [{"name": ""}]}), "$.dns.allow[0].name", "found ''"),
    (
        _doc(aws={"allow": [{"call": "dynamodb"}]}),
        "$.aws.allow[0].call",
        "found 'dynamodb'",
    ),
    (_doc(code={"allow": [{"op": "eval"}]}), "$.code.allow[0].op", "found 'eval'"),
    (
        _doc(env={"allow": [{"path": "/etc/environment"}]}),
        "$.env.allow[0].path",
        "found '/etc/environment'",
    ),
    (
        _doc(builtin={"disable": ["shell"]}),
        "$.builtin.disable[0]",
        "found 'shell' (did you mean 'shell-spawn'?)",
    ),
    (_doc(builtin={"enable": []}), "$.builtin.enable", "unexpected property 'enable'"),
    (_doc(evidence=[]), "$.evidence", "expected object, found []"),
    # Checks beyond the schema (the loader's semantic pass).
    (
        _doc(process={"allow": [{"exec": "git", "argv": "(unclosed"}]}),
        "$.process.allow[0].argv",
        "expected a regular expression, found '(unclosed'",
    ),
    (
        _doc(network={"allow": [{"cidr": "10.0.0.0/33"}]}),
        "$.network.allow[0].cidr",
        "found '10.0.0.0/33'",
    ),
    (
        _doc(network={"allow": [{"host": "api*.example.com"}]}),
        "$.network.allow[0].host",
        "found 'api*.example.com'",
    ),
    (
        _doc(network={"allow": [{"host": "example.com:443"}]}),
        "$.network.allow[0].host",
        "(no port, no other wildcard)",
    ),
    (
        _doc(dns={"allow": [{"name": "*.*.example.com"}]}),
        "$.dns.allow[0].name",
        "found '*.*.example.com'",
    ),
    (
        _doc(file={"allow": [{"path": "$FOO/x"}]}),
        "$.file.allow[0].path",
        "$TASK_ROOT, $TMP, $HOME followed by /, found '$FOO/x'",
    ),
    (
        _doc(file={"allow": [{"path": "$TMPX"}]}),
        "$.file.allow[0].path",
        "found '$TMPX'",
    ),
    (
        _doc(evidence={"ratio": float("nan")}),
        "$.evidence.ratio",
        "expected a finite number, found nan",
    ),
    (
        _doc(**{"evidence": {"a b": {1: "x"}}}),
        '$.evidence["a b"]',
        "expected string property names, found 1",
    ),
]


@pytest.mark.parametrize(("document", "path", "message"), ERROR_CASES)
def test_error_names_path_expected_and_found(
    document: Any, path: str, message: str
) -> None:
    """Each invalid field is reported at its JSON path with what was found."""
    with pytest.raises(PolicyError) as info:
        load_policy_document(document)
    issues = info.value.issues
    assert any(p == path and message in m for p, m in issues), issues
    assert path in str(info.value) or len(issues) > 1


def test_all_issues_reported_in_document_order() -> None:
    """Several problems are all reported, first to last, not only the first."""
    doc = _doc(
        mode="x",
        file={"allow": [{"path": "rel"}]},
        network={"allow": [{"ports": [99999]}]},
    )
    with pytest.raises(PolicyError) as info:
        load_policy_document(doc)
    paths = [p for p, _ in info.value.issues]
    assert paths == ["$.mode", "$.file.allow[0].path", "$.network.allow[0].ports[0]"]
    assert "(and 2 more)" in str(info.value)


def test_valid_full_document_loads() -> None:
    """The document that uses every section validates and comes back equal."""
    assert load_policy_document(FULL) == FULL
