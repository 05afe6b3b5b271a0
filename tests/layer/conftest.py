"""Fixtures for the layer tests (helpers live in layer_harness.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["monitor", "alert", "block"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each mode in turn."""
    return str(request.param)
