"""The demo scenario, smaller: every attack, fewer benign events.

Runs ``palisade demo --quick`` as a child process (it enters its own network
namespace when it can) and checks the report it wrote, whose figures come from the
analyzer's store and the stand-in servers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.aws, pytest.mark.slow]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("demo-out")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "palisade_cli.main",
            "demo",
            "--quick",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    path = out / "report.json"
    assert path.exists(), (
        f"no report written:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    data: dict[str, Any] = json.loads(path.read_text())
    data["_exit"] = done.returncode
    data["_stdout"] = done.stdout
    page = (out / "report.html").read_text()
    charts = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(charts) >= 4
    for chart in charts:
        ElementTree.fromstring(chart)  # well-formed SVG
    return data


def _ran(attack: dict[str, Any], mode: str) -> dict[str, Any] | None:
    result = attack["modes"].get(mode)
    if result is None or not result["ran"]:
        return None
    return result


def test_every_attack_is_detected_in_alert_and_block_mode(
    report: dict[str, Any],
) -> None:
    """Each attack raised an analyzer alert in every mode it ran in."""
    assert len(report["attacks"]) == 8
    for attack in report["attacks"]:
        for mode in ("alert", "block"):
            result = attack["modes"][mode]
            if not result["ran"]:
                assert "namespace" in result["skipped_reason"]
                assert not report["network"].startswith("private")
                continue
            assert result["alerted"], f"{attack['id']} not alerted in {mode} mode"
            assert result["alert_signatures"], attack["id"]


def test_attacks_really_work_when_only_alerted(report: dict[str, Any]) -> None:
    """In alert mode nothing is refused, so each attack's effect was observed."""
    for attack in report["attacks"]:
        result = _ran(attack, "alert")
        if result is None:
            continue
        assert result["effect"], f"{attack['id']} had no effect in alert mode"
        assert not result["blocked"], attack["id"]


def test_block_mode_stops_every_attack_before_its_effect(
    report: dict[str, Any],
) -> None:
    """With the proposed policy in block mode, a refusal is stored, nothing happens."""
    for attack in report["attacks"]:
        result = _ran(attack, "block")
        if result is None:
            continue
        assert result["blocked"], f"{attack['id']} was not blocked"
        assert result["blocked_rules"], attack["id"]
        assert result["effect"] is None, f"{attack['id']}: {result['effect']}"


def test_benign_replay_after_learning_is_quiet(report: dict[str, Any]) -> None:
    """Benign events after learning: stored, no false alert, no false block."""
    assert len(report["functions"]) == 3
    for fn in report["functions"]:
        assert fn["profile_state"] == "stable", fn["name"]
        assert fn["policy_rules"] > 0, fn["name"]
        assert fn["replay_invocations"] > 0, fn["name"]
        assert fn["block_replay_invocations"] > 0, fn["name"]
        assert fn["false_alerts"] == 0, (fn["name"], fn["false_alert_signatures"])
        assert fn["blocked_benign_events"] == 0, (
            fn["name"],
            fn["blocked_benign_targets"],
        )
        assert fn["failed_benign"] == 0, fn["name"]
        assert fn["latency_unprotected_ms"] and fn["latency_protected_ms"], fn["name"]
        assert fn["response_unprotected_ms"] and fn["response_protected_ms"], fn["name"]


def test_exit_status_and_text_report_agree(report: dict[str, Any]) -> None:
    """The command exits 0 exactly when its summary says OK."""
    ok = "-> OK" in report["_stdout"]
    assert ok == (report["_exit"] == 0), report["_stdout"][-2000:]
    assert ok
