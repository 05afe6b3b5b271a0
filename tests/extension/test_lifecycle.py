"""The extension's lifecycle against a fake Lambda API, through the real launcher."""

from __future__ import annotations

import os
import stat

from ext_fakes import (
    Layer,
    base_env,
    make_record,
    platform,
    read_batches,
    spawn,
    wait_until,
)


def _files_state(env: dict[str, str]) -> dict[str, object]:
    key = env["PALISADE_EXTENSION_KEY"]
    sock = env["PALISADE_EXTENSION_SOCKET"]
    return {
        "key": os.path.exists(key) and stat.S_IMODE(os.stat(key).st_mode),
        "socket": os.path.exists(sock) and stat.S_ISSOCK(os.stat(sock).st_mode),
        "dir": stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode),
    }


def test_prepares_before_register_and_registers_under_launcher_name(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN the launcher under a custom file name WHEN it starts THEN the key (0600),
    the socket and the 0700 directory exist before register, the name registered is
    the file name, and the telemetry subscription asks for platform events at 25 ms."""
    env = base_env(short_dir, fake_lambda.address)
    fake_lambda.on_register = lambda: _files_state(env)
    procs.append(spawn(opt, env, name="palisade-guard"))
    assert fake_lambda.wait_next(1)

    assert fake_lambda.register_snapshot == {"key": 0o600, "socket": True, "dir": 0o700}
    assert fake_lambda.registered[0]["name"] == "palisade-guard"
    assert fake_lambda.registered[0]["body"] == {"events": ["INVOKE", "SHUTDOWN"]}
    sub = fake_lambda.subscriptions[0]
    assert sub["types"] == ["platform"]
    assert sub["buffering"]["timeoutMs"] == 25
    assert sub["destination"]["URI"].startswith("http://127.0.0.1:")
    assert fake_lambda.log[:3] == ["register", "subscribe", "next"]

    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0


def test_next_is_held_until_the_record_arrives_then_batch_is_written(
    fake_lambda, opt, short_dir, procs
):
    """GIVEN an INVOKE WHEN the record has not arrived THEN /next is not called again;
    once the record is acked, /next follows and the batch holds the record joined
    with the request's platform telemetry."""
    env = base_env(short_dir, fake_lambda.address)
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    assert layer.record(make_record("init"))["type"] == "ack"

    fake_lambda.invoke("req-1")
    fake_lambda.telemetry([platform("start", "req-1")])
    assert not fake_lambda.wait_next(2, timeout=0.5)
    assert layer.record(make_record("req-1"))["type"] == "ack"
    fake_lambda.telemetry([platform("runtimeDone", "req-1", status="success")])
    assert fake_lambda.wait_next(2)

    out = short_dir + "/out.jsonl"
    assert wait_until(lambda: read_batches(out))
    batch = read_batches(out)[0]
    assert [r["request_id"] for r in batch["records"]] == ["init", "req-1"]
    assert batch["source"]["function"] == "orders"
    assert batch["source"]["version"] == "7"
    assert any(p["type"] == "platform.start" for p in batch["platform"])
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0
    layer.close()
