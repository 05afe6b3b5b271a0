"""The spool: bounded, oldest dropped and counted, re-sent with the same batch id."""

from __future__ import annotations

import json
import os
import threading

from ext_fakes import make_record
from palisade_extension import batch as batches
from palisade_extension.drops import Drops
from palisade_extension.errors import SinkError
from palisade_extension.shipper import Shipper
from palisade_extension.spool import Spool

SOURCE = {"function": "orders", "version": "7"}


class FlakySink:
    """Fails while ``down`` is set; remembers every batch id it accepted."""

    key = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.accepted: list[str] = []
        self.attempts = 0
        self.lock = threading.Lock()

    def send(self, batch):
        with self.lock:
            self.attempts += 1
            if self.down:
                raise SinkError("receiver down")
            self.accepted.append(batch["batch_id"])


def _batch(n_records: int = 1, drops=None):
    records = [make_record(f"r{i}", events=[]) for i in range(n_records)]
    return batches.build(SOURCE, records, [], [], drops or {})


def test_spool_is_bounded_and_drops_oldest_counted(short_dir):
    """GIVEN a spool smaller than three batches WHEN three are spooled THEN the
    oldest is deleted, its records are counted as spool-full and its own drop
    counts are carried over; the newest batches remain."""
    drops = Drops()
    first = _batch(2, drops={"auth": 3})
    size = len(batches_json(first))
    spool = Spool(os.path.join(short_dir, "spool"), int(size * 2.5), drops)
    paths = [spool.put("http", b) for b in (first, _batch(2), _batch(2))]
    assert paths[0] and not os.path.exists(paths[0])
    assert all(os.path.exists(p) for p in paths[1:])
    assert spool.size <= spool.max_bytes
    assert drops.peek() == {"spool-full": 2, "auth": 3}


def batches_json(batch) -> bytes:
    import json

    return json.dumps(batch, separators=(",", ":")).encode()


def test_batch_larger_than_spool_is_not_spooled(short_dir):
    """A batch bigger than the whole spool is refused (None), nothing else dropped."""
    drops = Drops()
    spool = Spool(os.path.join(short_dir, "spool"), 4096, drops)
    small = _batch(1)
    assert spool.put("http", small)
    big = _batch(1)
    big["records"][0]["events"] = [{"x": "y" * 5000}]
    assert spool.put("http", big) is None
    assert len(spool.pending("http")) == 1


def test_undelivered_batches_are_resent_with_same_id_oldest_first(short_dir):
    """GIVEN a receiver that is down WHEN batches are submitted THEN they stay
    spooled; once it is back, a kick delivers each exactly once, oldest first,
    under the batch_id it was built with."""
    drops = Drops()
    spool = Spool(os.path.join(short_dir, "spool"), 1 << 20, drops)
    sink = FlakySink()
    shipper = Shipper([sink], spool, drops)
    try:
        built = [_batch(1) for _ in range(3)]
        for batch in built:
            shipper.wait(shipper.submit(batch), 5)
        assert sink.accepted == []
        assert shipper.pending() == 3
        sink.down = False
        assert shipper.wait(shipper.kick(), 5)
        assert sink.accepted == [b["batch_id"] for b in built]
        assert shipper.pending() == 0
        assert drops.peek() == {}
    finally:
        shipper.stop()


def test_spool_survives_a_restart(short_dir):
    """Batches spooled by one process are found and re-sent by the next one."""
    root = os.path.join(short_dir, "spool")
    drops = Drops()
    spool = Spool(root, 1 << 20, drops)
    batch = _batch(1)
    spool.put("flaky", batch)
    journal = spool.journal(
        json.dumps({"type": "record", "seq": 1, "record": make_record("late")}).encode()
    )
    assert journal

    again = Spool(root, 1 << 20, Drops())
    assert [r["request_id"] for _, r in again.journaled()] == ["late"]
    sink = FlakySink()
    sink.down = False
    shipper = Shipper([sink], again, Drops())
    try:
        assert shipper.wait(shipper.kick(), 5)
        assert sink.accepted == [batch["batch_id"]]
    finally:
        shipper.stop()


def test_failed_sink_is_tried_once_per_round(short_dir):
    """A dead sink costs one attempt per delivery round, not one per batch."""
    drops = Drops()
    spool = Spool(os.path.join(short_dir, "spool"), 1 << 20, drops)
    for _ in range(5):
        spool.put("flaky", _batch(1))
    sink = FlakySink()
    shipper = Shipper([sink], spool, drops)
    try:
        assert shipper.wait(shipper.kick(), 5)
        assert sink.attempts <= 2
    finally:
        shipper.stop()


def test_permanent_rejection_is_dropped_and_counted(short_dir):
    """A batch the receiver rejects for good leaves the spool, counted as rejected."""

    class Rejecting:
        key = "rej"

        def send(self, batch):
            raise SinkError("400 bad batch", permanent=True)

    drops = Drops()
    spool = Spool(os.path.join(short_dir, "spool"), 1 << 20, drops)
    shipper = Shipper([Rejecting()], spool, drops)
    try:
        assert shipper.wait(shipper.submit(_batch(3)), 5)
        assert shipper.pending() == 0
        assert drops.peek() == {"rejected": 3}
    finally:
        shipper.stop()


def test_drop_counts_persist_across_restarts(short_dir):
    """Counts not yet reported survive the extension being killed."""
    path = os.path.join(short_dir, "drops.json")
    Drops(path).add("auth", 2)
    assert Drops(path).peek() == {"auth": 2}
    again = Drops(path)
    assert again.take() == {"auth": 2}
    assert Drops(path).peek() == {}


def test_each_sink_has_its_own_spool(short_dir):
    """GIVEN two sinks, one down WHEN a batch is submitted THEN the healthy one
    gets it at once and the other gets the same batch id once it recovers."""

    class Healthy(FlakySink):
        key = "healthy"

    drops = Drops()
    spool = Spool(os.path.join(short_dir, "spool"), 1 << 20, drops)
    down, healthy = FlakySink(), Healthy()
    healthy.down = False
    shipper = Shipper([down, healthy], spool, drops)
    try:
        batch = _batch(1)
        assert shipper.wait(shipper.submit(batch), 5)
        assert healthy.accepted == [batch["batch_id"]]
        assert down.accepted == []
        down.down = False
        assert shipper.wait(shipper.kick(), 5)
        assert down.accepted == [batch["batch_id"]]
        assert healthy.accepted == [batch["batch_id"]]
    finally:
        shipper.stop()


def test_batch_being_sent_is_not_dropped_for_room(short_dir):
    """A batch checked out for sending survives a full spool; the next oldest goes."""
    drops = Drops()
    first = _batch(2)
    size = len(batches_json(first))
    spool = Spool(os.path.join(short_dir, "spool"), int(size * 2.5), drops)
    sending = spool.put("http", first)
    second = spool.put("http", _batch(2))
    assert spool.checkout(sending)["batch_id"] == first["batch_id"]
    spool.put("http", _batch(2))
    assert os.path.exists(sending) and not os.path.exists(second)
    assert drops.peek() == {"spool-full": 2}
    spool.remove(sending)
