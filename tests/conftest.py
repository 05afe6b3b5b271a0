"""Fixtures shared by every test package.

Each package's own fixtures live in ``tests/<package>/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Remove every PALISADE_* variable for the test; monkeypatch restores them."""
    for key in list(os.environ):
        if key.startswith("PALISADE_"):
            monkeypatch.delenv(key)
    yield monkeypatch
