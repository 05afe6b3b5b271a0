"""The wait before /next: record, runtimeDone, deadline."""

from __future__ import annotations

import threading
import time

from ext_fakes import make_record, platform
from palisade_extension.collector import Collector


def _later(action, delay=0.05):
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def test_record_ends_the_wait():
    """The wait returns as soon as the request's record is in."""
    collector = Collector()
    _later(lambda: collector.add_record(make_record("r1")))
    result = collector.wait_for("r1", time.monotonic() + 30, 30, telemetry=True)
    assert (result.record, result.reason) == (True, "record")


def test_runtime_done_without_layer_ends_the_wait_at_once():
    """Without any sign of the layer, runtimeDone ends the wait (no dead time)."""
    collector = Collector()
    _later(
        lambda: collector.add_platform(
            [platform("runtimeDone", "r1", status="success")]
        )
    )
    result = collector.wait_for("r1", time.monotonic() + 30, 30, telemetry=True)
    assert (result.record, result.runtime_done, result.reason) == (
        False,
        "success",
        "runtime-done",
    )


def test_runtime_done_then_late_record_within_the_grace():
    """With the layer seen, a record shortly after runtimeDone is waited for."""
    collector = Collector()
    collector.add_record(make_record("init"))
    collector.add_platform([platform("runtimeDone", "r1", status="success")])
    _later(lambda: collector.add_record(make_record("r1")))
    result = collector.wait_for("r1", time.monotonic() + 30, 10, telemetry=True)
    assert result.record


def test_deadline_ends_the_wait():
    """Nothing arrives: the deadline ends the wait."""
    collector = Collector()
    collector.add_record(make_record("init"))
    result = collector.wait_for("r1", time.monotonic() + 0.05, 10, telemetry=True)
    assert (result.record, result.reason) == (False, "deadline")


def test_take_hands_over_and_resets():
    """take() returns records with their journal paths and platform items once."""
    collector = Collector()
    collector.add_record(make_record("r1"), "/spool/records/1.json")
    collector.add_platform([platform("start", "r1"), {"no": "type"}])
    records, journals, items = collector.take()
    assert [r["request_id"] for r in records] == ["r1"]
    assert journals == ["/spool/records/1.json"]
    assert [i["type"] for i in items] == ["platform.start"]
    assert collector.take() == ([], [], [])
