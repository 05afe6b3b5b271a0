"""Fixtures for the sandbox tests: function code, the probe extension, moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from palisade_sandbox import MotoEndpoint
from sandbox_testkit import APP, write_code


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A function package with ``app.handler`` that acts on ``event["action"]``."""
    return write_code(tmp_path / "code", {"app.py": APP})


@pytest.fixture
def probe_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the probe extension writes what it saw."""
    out = tmp_path / "probe-out"
    out.mkdir()
    return out


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server on loopback for the session."""
    with MotoEndpoint() as endpoint:
        assert endpoint.url is not None
        yield endpoint.url
