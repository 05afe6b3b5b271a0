"""Undelivered batches and not yet batched records, kept in /tmp.

Layout under the spool directory::

    records/<time_ns>-<pid>-<n>.json          a record acked to the layer, not yet
                                              in a batch (removed once it is)
    <sink>/<time_ns>-<n>-<records>-<batch_id>.json   a batch not yet delivered to
                                              that sink

Every batch is written here *before* it is sent, so a batch interrupted by a
freeze, a kill or a crash is re-sent later with the same ``batch_id`` and the
receiver drops the duplicate. The whole directory is bounded by ``max_bytes``:
beyond it the oldest batches are deleted and their records counted as
``spool-full`` (their own drop counts are carried over, not lost).

Limitation: /tmp survives a reset of the execution environment but not its end;
what is still spooled when Lambda discards the environment is lost uncounted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from typing import Any

from palisade_extension.drops import Drops

log = logging.getLogger(__name__)

RECORDS = "records"


class Spool:
    """A bounded directory of JSON files; safe to use from several threads."""

    def __init__(self, root: str, max_bytes: int, drops: Drops):
        self.root = root
        self.max_bytes = max_bytes
        self._drops = drops
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._sizes: dict[str, int] = {}
        self._busy: set[str] = set()  # being sent right now: never dropped
        if not os.path.isdir(root):
            os.makedirs(root, mode=0o700, exist_ok=True)
            os.chmod(root, 0o700)  # ours: private whatever the umask
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                if name.endswith(".tmp"):
                    _unlink(path)
                elif name.endswith(".json"):
                    with contextlib.suppress(OSError):
                        self._sizes[path] = os.path.getsize(path)

    @property
    def size(self) -> int:
        """Bytes currently spooled."""
        with self._lock:
            return sum(self._sizes.values())

    def _name(self) -> str:
        return f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):06d}"

    def _write(self, directory: str, name: str, data: bytes) -> str | None:
        with self._lock:
            if not self._make_room(len(data)):
                return None
            os.makedirs(directory, mode=0o700, exist_ok=True)
            path = os.path.join(directory, name)
            tmp = f"{path}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
            self._sizes[path] = len(data)
            return path

    def _make_room(self, needed: int) -> bool:
        """Drop the oldest batches until ``needed`` more bytes fit."""
        if needed > self.max_bytes:
            return False
        while sum(self._sizes.values()) + needed > self.max_bytes:
            batches = sorted(
                (os.path.basename(p), p)
                for p in self._sizes
                if os.path.basename(os.path.dirname(p)) != RECORDS
                and p not in self._busy
            )
            if not batches:
                return False
            self._drop_batch(batches[0][1])
        return True

    def _drop_batch(self, path: str) -> None:
        batch = self.load(path)
        count = 0
        if batch is not None:
            count = len(batch.get("records", []))
            drops = batch.get("drops")
            if isinstance(drops, dict):
                self._drops.merge(drops)
        else:
            count = _records_in_name(path)
        self._drops.add("spool-full", max(count, 0))
        log.warning("spool is full: dropped %s (%d records)", path, count)
        self.remove(path)

    def journal(self, data: bytes) -> str | None:
        """Keep a record until it is part of a spooled batch; None if no room.

        ``data`` is the JSON of the record, or of the frame that carried it
        (``{"type": "record", "record": {...}}``), as received: not re-encoding
        saves milliseconds for large records on the layer's path.
        """
        return self._write(
            os.path.join(self.root, RECORDS), self._name() + ".json", data
        )

    def journaled(self) -> list[tuple[str, dict[str, Any]]]:
        """Records left by an earlier run of the extension, oldest first."""
        directory = os.path.join(self.root, RECORDS)
        found = []
        for path in self._list(directory):
            record = self.load(path)
            if record is not None and record.get("type") == "record":
                record = record.get("record")
            if not isinstance(record, dict):
                self.remove(path)
                self._drops.add("spool-corrupt")
                continue
            found.append((path, record))
        return found

    def mark_inflight(self, request_id: str | None) -> None:
        """Remember the invocation in progress (None: no invocation in progress).

        A restarted extension finds the mark of an invocation its predecessor did
        not finish and counts that record as lost (``extension-restart``) unless
        the record itself was journaled.
        """
        path = os.path.join(self.root, "inflight")
        try:
            if request_id is None:
                _unlink(path)
                return
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(request_id)
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cannot mark the invocation in progress: %s", exc)

    def inflight(self) -> str | None:
        """The invocation a previous run of the extension left unfinished."""
        try:
            with open(os.path.join(self.root, "inflight"), encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def put(self, sink: str, batch: dict[str, Any]) -> str | None:
        """Spool ``batch`` for ``sink``; None when it does not fit at all."""
        data = json.dumps(batch, separators=(",", ":")).encode("utf-8")
        name = (
            f"{self._name()}-{len(batch.get('records', []))}-{batch['batch_id']}.json"
        )
        return self._write(os.path.join(self.root, sink), name, data)

    def pending(self, sink: str) -> list[str]:
        """Spooled batches of ``sink``, oldest first."""
        return self._list(os.path.join(self.root, sink))

    def _list(self, directory: str) -> list[str]:
        with self._lock:
            prefix = directory + os.sep
            return sorted(
                p
                for p in self._sizes
                if p.startswith(prefix) and os.sep not in p[len(prefix) :]
            )

    def checkout(self, path: str) -> dict[str, Any] | None:
        """Load a batch for sending and keep it from being dropped meanwhile.

        Returns None when it is gone (dropped for room) or unreadable; call
        ``release`` (or ``remove``) afterwards.
        """
        with self._lock:
            if path not in self._sizes:
                return None
            self._busy.add(path)
        batch = self.load(path)
        if batch is None:
            self.remove(path)
            self._drops.add("spool-corrupt")
        return batch

    def release(self, path: str) -> None:
        """The send is over and the batch stays spooled."""
        with self._lock:
            self._busy.discard(path)

    def load(self, path: str) -> dict[str, Any] | None:
        """Read a spooled file; None when it is gone or unreadable."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove(self, path: str) -> None:
        """Forget a file (delivered, batched or dropped)."""
        with self._lock:
            self._sizes.pop(path, None)
            self._busy.discard(path)
            _unlink(path)


def _records_in_name(path: str) -> int:
    parts = os.path.basename(path).split("-")
    try:
        return int(parts[3])
    except (IndexError, ValueError):
        return 0


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
