"""Invocation context: events land in the record of the invocation that caused
them, with threads, asyncio and overlapping invocations."""

from __future__ import annotations

from pathlib import Path

from layer_harness import run_script

SCRIPT = """
import asyncio, os, threading, types
import palisade

def handler(event, context):
    if event == 'thread':
        t = threading.Thread(target=os.listdir, args=('/etc',)); t.start(); t.join()
    elif event == 'asyncio':
        async def one(path):
            await asyncio.sleep(0)
            os.listdir(path)
        async def main():
            await asyncio.gather(one('/proc'), one('/opt'))
        asyncio.run(main())
    elif event.startswith('overlap'):
        started.wait(5) if event == 'overlap-b' else None
        os.listdir('/home' if event == 'overlap-a' else '/root')
        if event == 'overlap-a':
            started.set(); finished.wait(5)
        else:
            finished.set()
    return event

started, finished = threading.Event(), threading.Event()
h = palisade.protect(handler)
ctx = lambda rid: types.SimpleNamespace(aws_request_id=rid)
h('thread', ctx('req-thread'))
h('asyncio', ctx('req-asyncio'))
os.listdir('/etc/ssl') if os.path.isdir('/etc/ssl') else os.listdir('/etc')
a = threading.Thread(target=h, args=('overlap-a', ctx('req-a')))
b = threading.Thread(target=h, args=('overlap-b', ctx('req-b')))
a.start(); b.start(); a.join(); b.join()
"""


def test_records_per_invocation(tmp_path: Path) -> None:
    """A plain thread's events join the running invocation; asyncio tasks keep
    theirs; events between invocations are adopted by the next one; two
    overlapping invocations in threads keep separate records."""
    run = run_script(tmp_path, SCRIPT)
    records = {r["request_id"]: r for r in run.invocations}
    assert set(records) == {"req-thread", "req-asyncio", "req-a", "req-b"}, (
        run.describe()
    )

    def targets(rid: str) -> list[str]:
        return [e["target"] for e in records[rid]["events"] if e["op"] == "list"]

    assert targets("req-thread") == ["/etc"]
    assert sorted(targets("req-asyncio")) == ["/opt", "/proc"]
    between = targets("req-a") + targets("req-b")
    assert "/home" in targets("req-a") and "/home" not in targets("req-b")
    assert "/root" in targets("req-b") and "/root" not in targets("req-a")
    assert any(t.startswith("/etc") for t in between)
    for rid, record in records.items():
        assert all(e["request_id"] == rid for e in record["events"])
    assert records["req-thread"]["cold_start"] is True
    assert records["req-asyncio"]["cold_start"] is False
