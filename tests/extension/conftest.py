"""Fixtures of the extension's tests: fake Lambda API, analyzer, /opt tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

from ext_fakes import Analyzer, FakeLambda, build_opt


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A short private directory (Unix socket paths are limited to 108 bytes)."""
    path = tempfile.mkdtemp(prefix="palx-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_lambda() -> Iterator[FakeLambda]:
    api = FakeLambda().start()
    yield api
    api.stop()


@pytest.fixture
def analyzer() -> Iterator[Analyzer]:
    server = Analyzer().start()
    yield server
    server.stop()


@pytest.fixture
def opt(short_dir: str) -> str:
    return build_opt(short_dir)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; every one is killed and reaped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
