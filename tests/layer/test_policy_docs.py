"""The policy reference's examples are valid, and the engine imports only stdlib."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from palisade.policy import load_engine, load_policy_document

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "policy.md"


def _blocks(language: str) -> list[tuple[str, str]]:
    """(section heading, code) for each fenced block of ``language``."""
    text = REFERENCE.read_text(encoding="utf-8")
    found = []
    heading = ""
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip("# ").strip()
        elif match.group(2) == language:
            found.append((heading, match.group(3)))
    return found


def test_reference_documents_are_valid_and_equal() -> None:
    """The first JSON and YAML examples load and are the same policy."""
    pytest.importorskip("yaml")
    json_docs = [code for _, code in _blocks("json") if '"version"' in code]
    yaml_docs = [code for _, code in _blocks("yaml") if code.startswith("version")]
    assert json_docs and yaml_docs
    assert load_policy_document(json_docs[0]) == load_policy_document(yaml_docs[0])


def test_reference_rule_examples_are_valid() -> None:
    """Every one-line rule example under a kind's heading is a valid rule."""
    kinds = {"file", "process", "network", "dns", "aws", "code", "env", "Packages"}
    checked = 0
    for heading, code in _blocks("json"):
        if heading not in kinds:
            continue
        kind = "file" if heading == "Packages" else heading
        for line in code.strip().splitlines():
            rule = json.loads(line)
            load_policy_document({"version": 1, kind: {"allow": [rule]}})
            checked += 1
    assert checked >= 12


def test_reference_validate_output_is_current() -> None:
    """The policy_id printed in the reference is the id of its example."""
    text = REFERENCE.read_text(encoding="utf-8")
    shown = re.search(r"valid \(policy_id ([0-9a-f]{16})\)", text)
    assert shown is not None
    first = next(code for _, code in _blocks("json") if '"version"' in code)
    assert load_engine(first, env={}).policy_id == shown.group(1)


def test_policy_package_imports_only_the_standard_library() -> None:
    """GIVEN a fresh interpreter WHEN palisade.policy is imported and an engine
    loaded from JSON THEN every module loaded is stdlib, palisade, or wrapt
    (the one dependency the layer may have)."""
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from palisade.policy import load_engine\n"
        "load_engine('{\"version\": 1}', env={})\n"
        "new = set(sys.modules) - before\n"
        "top = {m.partition('.')[0] for m in new}\n"
        "print(sorted(t for t in top if t not in sys.stdlib_module_names"
        " and t not in ('palisade', 'wrapt')"
        " and not t.startswith('_sysconfigdata')))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT / 'layer')!r})\n" + script,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
