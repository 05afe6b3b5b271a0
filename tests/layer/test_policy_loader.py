"""Loading policies from files, inline JSON/YAML and dicts; ids; the validate CLI."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from palisade.errors import PolicyError
from palisade.policy import canonical_json, load_policy_document, policy_id
from palisade.policy.cli import validate_main

DOC: dict[str, Any] = {
    "version": 1,
    "mode": "block",
    "network": {"allow": [{"host": "*.example.com", "ports": [443]}]},
    "file": {"allow": [{"path": "$TMP/**", "access": ["read", "write"]}]},
}
YAML_TEXT = """\
version: 1
mode: block
network:
  allow:
    - host: "*.example.com"
      ports: [443]
file:
  allow:
    - {path: "$TMP/**", access: [read, write]}
"""


@pytest.fixture
def no_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import yaml`` fail, as on an interpreter without PyYAML."""
    monkeypatch.setitem(sys.modules, "yaml", None)


def test_dict_is_copied() -> None:
    """A dict source is validated and returned as an independent copy."""
    loaded = load_policy_document(DOC)
    assert loaded == DOC
    loaded["network"]["allow"].clear()
    assert DOC["network"]["allow"]


def test_inline_json_and_yaml_give_the_same_document() -> None:
    """Inline JSON and inline YAML of the same policy load equal, same id."""
    pytest.importorskip("yaml")
    from_json = load_policy_document(json.dumps(DOC))
    from_yaml = load_policy_document(YAML_TEXT)
    assert from_json == from_yaml == DOC
    assert policy_id(from_json) == policy_id(from_yaml)


def test_one_line_inline_yaml() -> None:
    """A one-line YAML document is text, not a file name."""
    pytest.importorskip("yaml")
    assert load_policy_document("version: 1") == {"version": 1}


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".policy", ""])
def test_files_by_extension_or_content(tmp_path: Path, suffix: str) -> None:
    """Files load by extension, or by content when the extension says nothing."""
    use_json = suffix in (".json", ".policy")
    if not use_json:
        pytest.importorskip("yaml")
    path = tmp_path / f"policy{suffix}"
    path.write_text(json.dumps(DOC) if use_json else YAML_TEXT, encoding="utf-8")
    assert load_policy_document(str(path)) == DOC
    assert load_policy_document(path) == DOC


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is named in the error."""
    missing = str(tmp_path / "nope.json")
    with pytest.raises(PolicyError, match="not found") as info:
        load_policy_document(missing)
    assert info.value.issues[0][0] == "$"
    assert missing in info.value.issues[0][1]


def test_json_syntax_error_has_position() -> None:
    """Broken JSON reports line and column."""
    with pytest.raises(PolicyError, match=r"line 1 column \d+") as info:
        load_policy_document('{"version": 1,}')
    assert info.value.issues[0][0] == "$"


def test_duplicate_json_property_is_refused() -> None:
    """A property given twice is an error rather than a silent last-wins."""
    with pytest.raises(PolicyError, match="duplicate property 'mode'"):
        load_policy_document('{"version": 1, "mode": "block", "mode": "monitor"}')


def test_yaml_syntax_error_has_position() -> None:
    """Broken YAML reports line and column."""
    pytest.importorskip("yaml")
    with pytest.raises(PolicyError, match="line 2"):
        load_policy_document("version: 1\nmode: [block\n")


def test_yaml_values_json_cannot_hold() -> None:
    """A YAML date in the free-form evidence is refused with its path."""
    pytest.importorskip("yaml")
    with pytest.raises(PolicyError) as info:
        load_policy_document("version: 1\nevidence:\n  first_seen: 2026-01-01\n")
    path, message = info.value.issues[0]
    assert path == "$.evidence.first_seen"
    assert "found date datetime.date(2026, 1, 1)" in message


def test_yaml_without_pyyaml_says_how_to_convert(no_yaml: None, tmp_path: Path) -> None:
    """Without PyYAML a YAML policy is refused with the conversion command."""
    path = tmp_path / "policy.yaml"
    path.write_text(YAML_TEXT, encoding="utf-8")
    for source in (str(path), YAML_TEXT):
        with pytest.raises(PolicyError, match=r"palisade policy validate --json FILE"):
            load_policy_document(source)
    assert load_policy_document(json.dumps(DOC)) == DOC


def test_word_that_is_no_file() -> None:
    """A bare word is reported as a missing file or document, not as YAML."""
    pytest.importorskip("yaml")
    with pytest.raises(PolicyError, match="neither an existing file nor a JSON"):
        load_policy_document("mypolicy")


@pytest.mark.parametrize("source", [b"\xff\xfe", 42, "   "])
def test_unusable_sources(source: Any) -> None:
    """Undecodable bytes, a non-text value and empty text each get a PolicyError."""
    with pytest.raises(PolicyError) as info:
        load_policy_document(source)
    assert info.value.issues and info.value.issues[0][0] == "$"


def test_policy_id_is_sha256_of_canonical_json() -> None:
    """policy_id is the first 16 hex of sha256 over sorted, compact JSON."""
    reordered = dict(reversed(list(DOC.items())))
    text = json.dumps(DOC, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(reordered) == text
    assert policy_id(reordered) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert policy_id({**DOC, "mode": "alert"}) != policy_id(DOC)


def test_cli_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate prints FILE: valid (policy_id ...) and exits 0."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps(DOC), encoding="utf-8")
    assert validate_main([str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: valid (policy_id {policy_id(DOC)})\n"


def test_cli_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate prints each issue as FILE: $.path: message and exits 1."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(DOC), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"version": 1, "mode": "x", "network": {"allow": [{"ports": [1e6]}]}}
        ),
        encoding="utf-8",
    )
    assert validate_main([str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{good}: valid" in captured.out
    lines = captured.err.splitlines()
    assert lines[0].startswith(f"{bad}: $.mode: expected one of ")
    assert lines[1] == (
        f"{bad}: $.network.allow[0].ports[0]: expected at most 65535, found 1000000.0"
    )


def test_cli_json_output_converts_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate --json prints the document as JSON (a YAML-to-JSON conversion)."""
    pytest.importorskip("yaml")
    path = tmp_path / "p.yaml"
    path.write_text(YAML_TEXT, encoding="utf-8")
    assert validate_main(["--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == DOC


def test_cli_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No file is a usage error (exit 2)."""
    assert validate_main([]) == 2
    assert "FILE" in capsys.readouterr().err


def test_palisade_command_dispatches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`palisade policy validate` reaches validate_main."""
    cli = pytest.importorskip("palisade_cli.main")
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"version": 2}), encoding="utf-8")
    assert cli.main(["policy", "validate", str(path)]) == 1
    assert f"{path}: $.version: expected 1, found 2" in capsys.readouterr().err
