"""Counts of what the extension could not deliver or keep, by reason.

The counts ride in the next batch's ``drops`` and are reset once that batch is
spooled. They are also kept in a small file beside the spool so that a restart of
the extension (after a crash or a kill) reports them instead of losing them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter

log = logging.getLogger(__name__)


class Drops:
    """A thread-safe counter of drops by reason, persisted to ``path`` if given."""

    def __init__(self, path: str | None = None):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._path = path
        if path:
            self._counts.update(_read(path))

    def add(self, reason: str, count: int = 1) -> None:
        """Count ``count`` drops under ``reason``."""
        if count <= 0:
            return
        with self._lock:
            self._counts[reason] += count
            self._save()

    def merge(self, counts: dict[str, int]) -> None:
        """Add counts taken back from a batch that could not be kept."""
        with self._lock:
            for reason, count in counts.items():
                if isinstance(count, int) and count > 0:
                    self._counts[str(reason)] += count
            self._save()

    def peek(self) -> dict[str, int]:
        """The counts so far, without resetting them."""
        with self._lock:
            return dict(self._counts)

    def take(self) -> dict[str, int]:
        """Return the counts and start again from zero."""
        with self._lock:
            counts = dict(self._counts)
            self._counts.clear()
            self._save()
            return counts

    def _save(self) -> None:
        if not self._path:
            return
        try:
            tmp = f"{self._path}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(dict(self._counts), handle)
            os.replace(tmp, self._path)
        except OSError as exc:
            log.debug("cannot persist drop counts to %s: %s", self._path, exc)


def _read(path: str) -> dict[str, int]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and v > 0}
