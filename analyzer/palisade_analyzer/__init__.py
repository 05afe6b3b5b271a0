"""Palisade's central analyzer: ingest, trail, profiles, detection, alerts, policy.

The facade names the pieces; each lives in the module named for it::

    from palisade_analyzer import Ingestor, KeyRing, SQLiteStore, load_settings

    store = SQLiteStore("./.palisade/analyzer.db")
    ingestor = Ingestor(store, KeyRing.load(settings.keys), settings)
    result = ingestor.ingest(body, headers)   # IngestResult(status, code, ...)

The AWS backend (``AWSStore``) is imported lazily so the embedded one needs no
boto3 at import.
"""

from __future__ import annotations

from typing import Any

from .ingest import (
    Ingestor,
    IngestResult,
    ingest_function_url,
    ingest_message,
    ingest_stream_event,
    signed_envelope,
)
from .model import Alert, SigStats, TrailEvent, VersionInfo
from .settings import Settings, load_settings
from .signing import Key, KeyRing, sign, signed_headers
from .sqlite_store import SQLiteStore
from .store import ApplyResult, Store
from .suggest import suggest_policy

__all__ = [
    "AWSStore",
    "Alert",
    "ApplyResult",
    "IngestResult",
    "Ingestor",
    "Key",
    "KeyRing",
    "SQLiteStore",
    "Settings",
    "SigStats",
    "Store",
    "TrailEvent",
    "VersionInfo",
    "ingest_function_url",
    "ingest_message",
    "ingest_stream_event",
    "load_settings",
    "sign",
    "signed_envelope",
    "signed_headers",
    "suggest_policy",
]


def __getattr__(name: str) -> Any:
    if name == "AWSStore":
        from .aws_store import AWSStore

        return AWSStore
    raise AttributeError(f"module 'palisade_analyzer' has no attribute {name!r}")
