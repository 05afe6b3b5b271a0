"""Batch signatures and the keys that may make them.

A sender signs ``timestamp + "." + body`` with HMAC-SHA256 and a per-deployment
secret and sends ``X-Palisade-Key-Id``, ``X-Palisade-Timestamp`` (unix seconds)
and ``X-Palisade-Signature: v1=<hex>``. Each key is bound to the function names
(globs) it may report, so one leaked key cannot speak for other functions.

Keys document (a file, or the value of ``PALISADE_ANALYZER_KEYS``)::

    {"keys": [{"id": "prod-1", "secret": "...", "functions": ["orders-*"]}]}
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from palisade.errors import ConfigError

KEY_ID_HEADER = "X-Palisade-Key-Id"
TIMESTAMP_HEADER = "X-Palisade-Timestamp"
SIGNATURE_HEADER = "X-Palisade-Signature"


@dataclass(frozen=True)
class Key:
    """One signing key and the function-name globs it may report."""

    id: str
    secret: bytes
    functions: tuple[str, ...]

    def allows(self, function: str) -> bool:
        """Whether this key may report records of ``function``."""
        return any(fnmatch.fnmatchcase(function, glob) for glob in self.functions)


def sign(secret: bytes | str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Palisade-Signature`` value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_headers(
    key_id: str, secret: bytes | str, body: bytes, timestamp: int
) -> dict[str, str]:
    """The three headers a sender adds to a batch."""
    return {
        KEY_ID_HEADER: key_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is the v1 signature of ``body`` at ``timestamp``."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature.strip())


def _key_problem(item: Any) -> str | None:
    """What is wrong with one keys entry, without its secret's value; or None."""
    if not isinstance(item, Mapping):
        return f"expected an object, found {type(item).__name__}"
    if not isinstance(item.get("id"), str) or not item["id"]:
        return "field 'id' is missing or not a non-empty string"
    secret = item.get("secret")
    if not isinstance(secret, str):
        found = "missing" if secret is None else type(secret).__name__
        return f"field 'secret' must be a string; found {found}"
    if len(secret) < 16:
        return "field 'secret' is shorter than 16 characters"
    functions = item.get("functions")
    if not isinstance(functions, list) or not functions:
        return "field 'functions' must be a non-empty list of function-name globs"
    if not all(isinstance(f, str) and f for f in functions):
        return "field 'functions' must hold only non-empty strings"
    return None


class KeyRing:
    """The keys the analyzer accepts, by id."""

    def __init__(self, keys: Iterable[Key] = ()):
        self._keys = {key.id: key for key in keys}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> Key | None:
        """The key named ``key_id``, or None."""
        return self._keys.get(key_id)

    @classmethod
    def from_document(cls, doc: Any, source: str = "keys") -> KeyRing:
        """Parse a keys document; raise ConfigError naming what is wrong."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
            raise ConfigError(
                f'{source}: expected an object {{"keys": [...]}}, found '
                f"{type(doc).__name__}"
            )
        keys = []
        for i, item in enumerate(doc["keys"]):
            problem = _key_problem(item)
            if problem is not None:
                # Never echo the entry: it holds a secret.
                name = item.get("id") if isinstance(item, Mapping) else None
                label = (
                    f"keys[{i}] (id {name!r:.80})"
                    if isinstance(name, str)
                    else (f"keys[{i}]")
                )
                raise ConfigError(
                    f"{source}: {label}: {problem}; each key needs a non-empty "
                    "string id, a secret of at least 16 characters and a non-empty "
                    "list of function globs"
                )
            keys.append(
                Key(item["id"], item["secret"].encode(), tuple(item["functions"]))
            )
        return cls(keys)

    @classmethod
    def load(cls, spec: str) -> KeyRing:
        """Keys from inline JSON (starting with ``{``) or from a file path."""
        spec = spec.strip()
        if not spec:
            return cls()
        if spec.startswith("{"):
            text, source = spec, "PALISADE_ANALYZER_KEYS"
        else:
            try:
                with open(os.path.expanduser(spec), encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ConfigError(
                    f"keys file {spec!r} cannot be read ({exc.strerror}); expected "
                    'a JSON file {"keys": [...]}'
                ) from exc
            source = spec
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_document(doc, source)
