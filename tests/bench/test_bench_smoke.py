"""Smoke test of the benchmark harness: it runs end to end and writes its outputs.

Nothing here times anything or judges a figure: speed belongs to ``make bench``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from palisade_cli import bench


@pytest.mark.slow
def test_smoke_run_writes_results_page_and_charts(tmp_path: Path) -> None:
    """GIVEN a temp output dir WHEN `palisade bench --smoke --out DIR` runs THEN it
    writes one results JSON with every section, a page naming each section, and
    every figure is either a number or a stated reason."""
    pytest.importorskip("matplotlib")

    status = bench.main(["--smoke", "--no-install", "--out", str(tmp_path)])

    assert status == 0
    results_files = list((tmp_path / "results").glob("*-quick.json"))
    assert len(results_files) == 1
    results = json.loads(results_files[0].read_text())
    assert results["quick"] is True
    assert results["machine"]["nproc"] >= 1
    assert set(results["sections"]) == {
        "micro",
        "invocation",
        "coldstart",
        "memory",
        "layer",
        "analyzer",
    }
    for section in results["sections"].values():
        assert section["figures"], section["title"]
        for figure in section["figures"]:
            if figure["status"] == "measured":
                assert isinstance(figure["value"], int | float), figure["id"]
            else:
                assert figure["value"] is None and figure["reason"], figure["id"]

    page = (tmp_path / "benchmarks.md").read_text()
    for section in results["sections"].values():
        assert f"## {section['title']}" in page
    assert "## How it is measured" in page
    for png in (tmp_path / "benchmarks").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"benchmarks/{png.name}" in page


def test_unknown_section_is_refused_with_the_expected_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An unknown --only section exits 2 and names the sections that exist."""
    status = bench.main(["--only", "nonsense", "--out", str(tmp_path)])

    assert status == 2
    err = capsys.readouterr().err
    assert "nonsense" in err and "micro" in err
    assert not (tmp_path / "results").exists()
