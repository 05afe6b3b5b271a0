"""The function's policy, fetched once at start and served to the layer.

PALISADE_POLICY may be ``ssm:/parameter/name`` (SSM GetParameter with decryption,
boto3's endpoint rules including ``AWS_ENDPOINT_URL``), a file path (``file:`` is
optional), or the document inline. JSON or YAML; YAML is turned into JSON and
the result validated against ``policy.schema.json``. An SSM parameter is re-read
between invokes every PALISADE_POLICY_REFRESH_S seconds, in a background thread so
that no invoke waits for it; a changed version replaces the policy served.

Limitation: a refresh that fails (parameter gone, invalid, SSM unreachable) keeps
serving the last good policy and logs the error, in either PALISADE_ON_ERROR mode,
because only start-up can still report an init error.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from palisade_extension import schemas
from palisade_extension.errors import PolicySourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """A policy document and where it came from (``ssm:/name@3``, ``file:/x``)."""

    policy: dict[str, Any] | None
    source: str
    version: str | None = None


def parse(text: str, where: str) -> dict[str, Any]:
    """Parse JSON or YAML text and validate it as a policy.

    Raises:
        PolicySourceError: unparseable, not an object, or invalid.
    """
    try:
        document = json.loads(text)
    except ValueError:
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicySourceError(
                f"policy from {where} is neither JSON nor YAML: {exc}"
            ) from exc
    if not isinstance(document, dict):
        raise PolicySourceError(
            f"policy from {where} is a {type(document).__name__}, expected a mapping "
            "with at least 'version: 1'"
        )
    # Round-trip so YAML-only types (dates) fail here, not in the layer.
    try:
        document = json.loads(json.dumps(document))
    except (TypeError, ValueError) as exc:
        raise PolicySourceError(
            f"policy from {where} has values JSON cannot hold: {exc}"
        ) from exc
    issues = schemas.problems("policy", document)
    if issues:
        raise PolicySourceError(
            f"policy from {where} does not match policy.schema.json: "
            + "; ".join(issues)
        )
    return document


def _ssm_get(name: str, timeout: float) -> tuple[str, str]:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise PolicySourceError(
            f"PALISADE_POLICY names SSM parameter {name!r} but boto3 is not "
            "available to the extension; ship it under /opt/palisade"
        ) from exc
    config = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}
    )
    kwargs: dict[str, Any] = {"config": config}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    try:
        answer = boto3.client("ssm", **kwargs).get_parameter(
            Name=name, WithDecryption=True
        )
    except Exception as exc:  # botocore's error types are many; all mean "no policy"
        raise PolicySourceError(
            f"cannot read SSM parameter {name!r}: {exc}; check that it exists and "
            "that the function's role may ssm:GetParameter (and kms:Decrypt)"
        ) from exc
    parameter = answer["Parameter"]
    return str(parameter["Value"]), str(parameter.get("Version", ""))


def load(spec: str, timeout: float = 2.0) -> Loaded:
    """Load the policy named by a PALISADE_POLICY value (empty: no policy).

    Raises:
        PolicySourceError: it cannot be read or is invalid.
    """
    spec = spec.strip()
    if not spec:
        return Loaded(None, "none")
    if spec.startswith("ssm:"):
        name = spec[len("ssm:") :]
        text, version = _ssm_get(name, timeout)
        return Loaded(parse(text, spec), f"{spec}@{version}", version)
    path = spec[len("file:") :] if spec.startswith("file:") else spec
    if spec.startswith("file:") or (
        "\n" not in path and not path.lstrip().startswith("{") and os.path.isfile(path)
    ):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise PolicySourceError(f"cannot read policy file {path}: {exc}") from exc
        return Loaded(parse(text, path), f"file:{path}")
    if "\n" not in spec and spec.startswith(("/", "./")):
        raise PolicySourceError(
            f"PALISADE_POLICY={spec!r} looks like a path but no such file exists"
        )
    return Loaded(parse(spec, "PALISADE_POLICY"), "inline")


class PolicyStore:
    """The policy currently served, and its periodic refresh from SSM."""

    def __init__(self, spec: str, refresh_s: float):
        self.spec = spec.strip()
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._loaded = Loaded(None, "none")
        self._error: str | None = None
        self._checked = time.monotonic()
        self._refreshing = False

    def load_initial(self) -> None:
        """Load at start.

        Raises:
            PolicySourceError: unavailable or invalid (the caller applies
                PALISADE_ON_ERROR).
        """
        try:
            loaded = load(self.spec)
        except PolicySourceError as exc:
            with self._lock:
                self._loaded = Loaded(None, self._source_name())
                self._error = str(exc)
                self._checked = time.monotonic()
            raise
        with self._lock:
            self._loaded = loaded
            self._error = None
            self._checked = time.monotonic()

    def _source_name(self) -> str:
        if self.spec.startswith("ssm:"):
            return self.spec
        return "inline" if "\n" in self.spec else f"file:{self.spec}"

    def answer(self) -> dict[str, Any]:
        """The body of a ``policy`` reply (without type/seq)."""
        with self._lock:
            reply: dict[str, Any] = {
                "policy": self._loaded.policy,
                "source": self._loaded.source,
            }
            if self._error:
                reply["error"] = self._error
            return reply

    def maybe_refresh(self) -> bool:
        """Start a background re-read of an SSM policy if it is due."""
        if not self.spec.startswith("ssm:") or self.refresh_s <= 0:
            return False
        with self._lock:
            due = time.monotonic() - self._checked >= self.refresh_s
            if not due or self._refreshing:
                return False
            self._refreshing = True
        threading.Thread(
            target=self._refresh, name="palisade-policy", daemon=True
        ).start()
        return True

    def refresh_now(self) -> None:
        """Re-read the SSM parameter in this thread (tests and the background job)."""
        try:
            loaded = load(self.spec)
        except PolicySourceError as exc:
            log.error("policy refresh failed, keeping the policy in force: %s", exc)
            with self._lock:
                self._checked = time.monotonic()
            return
        with self._lock:
            changed = loaded.version != self._loaded.version
            self._loaded = loaded
            self._error = None
            self._checked = time.monotonic()
        if changed:
            log.info("policy now %s", loaded.source)

    def _refresh(self) -> None:
        try:
            self.refresh_now()
        finally:
            with self._lock:
                self._refreshing = False
