"""Delivers spooled batches to every sink from a background thread.

``submit`` writes the batch into each sink's spool directory (so nothing is only
in memory) and wakes the thread; ``wait`` lets the main loop give delivery a
bounded amount of time before it calls /next. A batch that is not delivered by
then stays spooled; the thread resumes after the thaw and ``kick`` (called on
every INVOKE) makes it retry whatever is still pending, oldest first. A sink that
fails is not retried again in the same round, so a dead analyzer costs one timeout
per invoke, not one per batch.

Limitation: delivery is at least once. A send interrupted by a freeze or a kill is
repeated under the same ``batch_id``; receivers drop the duplicate (the file sink
does not: its readers must).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from palisade_extension.drops import Drops
from palisade_extension.errors import SinkError
from palisade_extension.sinks import Sink
from palisade_extension.spool import Spool

log = logging.getLogger(__name__)


class Shipper:
    """One delivery thread for all sinks."""

    def __init__(self, sinks: list[Sink], spool: Spool, drops: Drops):
        self.sinks = sinks
        self._spool = spool
        self._drops = drops
        self._cond = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._stopping = False
        self._logged: set[str] = set()
        self.delivered = 0
        self._thread = threading.Thread(
            target=self._run, name="palisade-ship", daemon=True
        )
        self._thread.start()

    def submit(self, batch: dict[str, Any]) -> int:
        """Spool ``batch`` for every sink and start delivering it.

        Returns:
            A ticket for ``wait``.
        """
        for sink in self.sinks:
            if self._spool.put(sink.key, batch) is None:
                # Larger than the whole spool: it can only be tried once, now.
                self._try_unspooled(sink, batch)
        return self.kick()

    def _try_unspooled(self, sink: Sink, batch: dict[str, Any]) -> None:
        try:
            sink.send(batch)
            self.delivered += 1
        except Exception as exc:
            self._drops.add("spool-full", len(batch.get("records", [])))
            self._log_once(sink.key, f"batch too large to spool and not sent: {exc}")

    def kick(self) -> int:
        """Retry everything pending; returns a ticket for ``wait``."""
        with self._cond:
            self._requested += 1
            self._cond.notify_all()
            return self._requested

    def wait(self, ticket: int, timeout: float) -> bool:
        """Wait until a delivery round that began after ``ticket`` ended."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._completed >= ticket, max(0.0, timeout)
            )

    def pending(self) -> int:
        """Batches still spooled, summed over the sinks."""
        return sum(len(self._spool.pending(sink.key)) for sink in self.sinks)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or self._requested > self._completed
                )
                if self._stopping:
                    return
                target = self._requested
            try:
                self._round()
            except Exception:  # the thread must survive our own bugs
                log.exception("internal error while shipping batches")
            with self._cond:
                self._completed = target
                self._cond.notify_all()

    def _round(self) -> None:
        for sink in self.sinks:
            for path in self._spool.pending(sink.key):
                batch = self._spool.checkout(path)
                if batch is None:
                    continue
                try:
                    sink.send(batch)
                except SinkError as exc:
                    if exc.permanent:
                        self._spool.remove(path)
                        self._drops.add("rejected", len(batch.get("records", [])))
                        log.error(
                            "sink %s rejected a batch for good: %s", sink.key, exc
                        )
                        continue
                    self._spool.release(path)
                    self._log_once(sink.key, str(exc))
                    break
                except Exception as exc:
                    self._spool.release(path)
                    self._log_once(sink.key, f"internal error: {exc!r}")
                    break
                self._spool.remove(path)
                self.delivered += 1
                self._logged.discard(sink.key)

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("sink %s failed, batches stay spooled: %s", key, message)
