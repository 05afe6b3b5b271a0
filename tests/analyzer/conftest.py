"""Fixtures of the analyzer tests: keys, stores on both backends, an ingestor."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from analyzer_records import KEYS_DOC, TEST_SETTINGS
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.signing import KeyRing
from palisade_analyzer.sqlite_store import SQLiteStore


@pytest.fixture
def keys() -> KeyRing:
    """The test key ring."""
    return KeyRing.from_document(copy.deepcopy(KEYS_DOC))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region for moto; restored afterwards."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    yield


def _aws_store() -> Any:
    from palisade_analyzer.aws_store import AWSStore

    store = AWSStore(
        table_prefix="test-palisade-", bucket="test-palisade-trail", region="us-east-1"
    )
    store.create_tables()
    return store


@pytest.fixture(params=["sqlite", "aws"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, aws_env: None
) -> Iterator[Any]:
    """The same suite on both backends: SQLite, and DynamoDB + S3 under moto."""
    if request.param == "sqlite":
        st = SQLiteStore(str(tmp_path / "analyzer.db"))
        yield st
        st.close()
        return
    from moto import mock_aws

    with mock_aws():
        st = _aws_store()
        yield st
        st.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A SQLite store in a temporary folder."""
    st = SQLiteStore(str(tmp_path / "analyzer.db"))
    yield st
    st.close()


@pytest.fixture
def ingestor(store: Any, keys: KeyRing) -> Ingestor:
    """An ingestor with test thresholds on the parametrized store."""
    return Ingestor(store, keys, TEST_SETTINGS)
