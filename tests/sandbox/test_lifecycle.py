"""Lifecycle of a sandboxed function: cold and warm starts, timeouts, crashes,
init errors, freezing, extensions and shutdown, with the real awslambdaric."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from palisade_sandbox import RequestTooLargeError, Sandbox
from palisade_sandbox.processes import group_members, process_state
from sandbox_testkit import PROBE, read_probe, write_code


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state != "Z"


@pytest.mark.parametrize("event", [{"a": 1}, [1, "two"], None, 42, "text", 1.5])
def test_handler_returns_each_json_event_type(code_dir: Path, event: object) -> None:
    """The handler's return value comes back decoded for object, list, null,
    number and string events."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        result = box.invoke(event)
    assert result.status == "success", result.error
    assert result.payload["echo"] == event


def test_cold_then_warm_reuses_the_process(code_dir: Path) -> None:
    """The first invoke is a cold start; the next reuses the same runtime process
    and module state."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        first = box.invoke({})
        pid = box.runtime_pid
        second = box.invoke({})
        assert box.runtime_pid == pid
    assert first.cold_start and not second.cold_start
    assert first.payload["loaded_at"] == second.payload["loaded_at"]
    assert first.init_duration_ms is not None and second.init_duration_ms is None


def test_handler_exception_is_an_error_result(code_dir: Path) -> None:
    """An exception in the handler is reported with its type, message and stack;
    the environment stays warm."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        result = box.invoke({"action": "raise", "message": "bad input"})
        after = box.invoke({})
    assert result.status == "error"
    assert result.error is not None
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "bad input"
    assert any("app.py" in line for line in result.error["stackTrace"])
    assert not after.cold_start and after.ok


def test_context_carries_request_deadline_and_client_context(code_dir: Path) -> None:
    """The Lambda context reflects the headers of invocation/next."""
    with Sandbox("app.handler", code_dir, moto=False, timeout=5, memory_mb=256) as box:
        result = box.invoke(
            {"action": "context"}, client_context={"custom": {"k": "v"}}
        )
    payload = result.payload
    assert payload["request_id"] == result.request_id
    assert payload["arn"].endswith(":function:palisade-sandbox")
    assert 0 < payload["remaining_ms"] <= 5000
    assert payload["client_context"] == {"k": "v"}
    assert payload["memory"] == "256"


def test_function_environment_and_paths(code_dir: Path) -> None:
    """The function sees Lambda's variables pointing at the sandbox's paths, fake
    credentials, no PYTHONPATH, and the task root first on sys.path."""
    with Sandbox("app.handler", code_dir, moto=False, env={"MY_SETTING": "1"}) as box:
        env = box.invoke({"action": "env"}).payload
        paths = box.invoke({"action": "paths"}).payload
        layout = box.layout
        assert layout is not None
        assert env["LAMBDA_TASK_ROOT"] == str(layout.task)
        assert env["TMPDIR"] == str(layout.tmp)
        assert env["PALISADE_OPT_DIR"] == str(layout.opt)
        assert env["AWS_LAMBDA_RUNTIME_API"] == box.api_address
    assert env["_HANDLER"] == "app.handler"
    assert env["MY_SETTING"] == "1"
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert "PYTHONPATH" not in env
    for key in (
        "AWS_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    ):
        assert env[key]
    assert paths["sys_path"][0] == str(layout.task)
    assert paths["cwd"] == str(layout.task)


def test_timeout_resets_the_environment(code_dir: Path) -> None:
    """A handler that outlives the timeout gets Sandbox.Timedout, its process is
    killed, and the next invoke is a cold start in a new process."""
    with Sandbox("app.handler", code_dir, moto=False, timeout=0.5) as box:
        box.invoke({})
        old = box.runtime_pid
        assert old is not None
        result = box.invoke({"action": "sleep", "seconds": 5})
        assert result.status == "timeout" and result.reset
        assert result.error is not None
        assert result.error["errorType"] == "Sandbox.Timedout"
        assert "timed out after 0.50 seconds" in result.error["errorMessage"]
        assert not alive(old)
        after = box.invoke({})
        assert after.cold_start and after.ok and box.runtime_pid != old


@pytest.mark.parametrize("action", ["exit", "sigkill"])
def test_runtime_crash_is_exit_error_and_reset(code_dir: Path, action: str) -> None:
    """A runtime that dies mid-invoke (os._exit, or SIGKILL as the OOM killer
    would) yields Runtime.ExitError; the next invoke starts cold."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        result = box.invoke({"action": action})
        after = box.invoke({})
    assert result.status == "crash" and result.reset
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ExitError"
    expected = "exit status 3" if action == "exit" else "signal: killed"
    assert expected in result.error["errorMessage"]
    assert after.cold_start and after.ok


def test_import_error_is_an_init_error(tmp_path: Path) -> None:
    """A handler module that fails to import reports Runtime.ImportModuleError
    through /runtime/init/error, and the function never runs."""
    code = write_code(tmp_path / "code", {"app.py": "import not_a_module_xyz\n"})
    with Sandbox("app.handler", code, moto=False) as box:
        result = box.invoke({})
        again = box.invoke({})
    assert result.status == "init_error" and result.cold_start
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module_xyz" in result.error["errorMessage"]
    assert any("not_a_module_xyz" in line for line in result.logs)
    assert again.status == "init_error" and again.cold_start


def test_missing_handler_function_is_an_init_error(code_dir: Path) -> None:
    """A handler name that the module does not define is Runtime.HandlerNotFound."""
    with Sandbox("app.nope", code_dir, moto=False) as box:
        result = box.invoke({})
    assert result.status == "init_error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.HandlerNotFound"


@pytest.mark.parametrize("executable", [False, True])
def test_exec_wrapper_is_checked_then_run(
    code_dir: Path, tmp_path: Path, executable: bool
) -> None:
    """AWS_LAMBDA_EXEC_WRAPPER must be executable (else the init fails with
    Runtime.InvalidEntrypoint); a working one runs first and what it exports
    reaches the function."""
    wrapper = tmp_path / "wrapper"
    wrapper.write_text('#!/bin/sh\nWRAPPED=yes exec "$@"\n')
    wrapper.chmod(0o755 if executable else 0o644)
    env = {"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)}
    with Sandbox("app.handler", code_dir, moto=False, env=env) as box:
        result = box.invoke({"action": "env"})
    if executable:
        assert result.ok and result.payload["WRAPPED"] == "yes"
    else:
        assert result.status == "init_error"
        assert result.error is not None
        assert result.error["errorType"] == "Runtime.InvalidEntrypoint"


def test_slow_module_import_hits_the_init_limit(tmp_path: Path) -> None:
    """Module code slower than the init limit ends init with a timeout."""
    code = write_code(
        tmp_path / "code",
        {"app.py": "import time\ntime.sleep(30)\ndef handler(e, c):\n    return 1\n"},
    )
    with Sandbox("app.handler", code, moto=False, init_timeout=0.5) as box:
        result = box.invoke({})
        pids = [c.pid for c in box.children]
    assert result.status == "init_error"
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert not any(alive(pid) for pid in pids)


def test_freeze_stops_processes_between_invokes(
    code_dir: Path, probe_out: Path
) -> None:
    """Between invokes the runtime and the extensions are stopped (state T) and
    run again for the next invoke."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out)},
    ) as box:
        box.invoke({})
        pids = [box.runtime_pid, *box.extension_pids.values()]
        assert len(pids) == 2
        assert all(process_state(pid) == "T" for pid in pids if pid)
        result = box.invoke({})
        assert result.ok and not result.cold_start
        assert all(process_state(pid) == "T" for pid in pids if pid)


def test_freeze_can_be_disabled(code_dir: Path) -> None:
    """With freeze=False the runtime keeps running between invokes."""
    with Sandbox("app.handler", code_dir, moto=False, freeze=False) as box:
        box.invoke({})
        pid = box.runtime_pid
        assert pid is not None
        assert process_state(pid) in ("S", "R")


def test_shutdown_leaves_no_process(code_dir: Path, probe_out: Path) -> None:
    """After shutdown no process of the sandbox (nor its children) is left and
    the work directory is gone."""
    box = Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out)},
    )
    with box:
        box.invoke({})
        pids = [c.pid for c in box.children]
        work = box.layout.work if box.layout else None
    assert pids and all(not alive(pid) for pid in pids)
    assert all(group_members(pid) == [] for pid in pids)
    assert work is not None and not work.exists()


def test_function_children_are_frozen_and_killed(code_dir: Path) -> None:
    """A process the function leaves running is frozen with it between invokes
    and killed at shutdown."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        pid = box.invoke({"action": "spawn"}).payload["pid"]
        assert process_state(pid) == "T"
    assert not alive(pid)


def test_shutdown_after_exception_in_block(code_dir: Path) -> None:
    """Leaving the ``with`` block by an exception still kills the runtime."""
    pid = None
    with pytest.raises(KeyError), Sandbox("app.handler", code_dir, moto=False) as box:
        box.invoke({})
        pid = box.runtime_pid
        raise KeyError("leave")
    assert pid is not None and not alive(pid)


def test_extension_sees_invoke_and_shutdown(code_dir: Path, probe_out: Path) -> None:
    """An extension registers (name = file name), gets INVOKE with the documented
    fields for every invoke and SHUTDOWN spindown with a deadline at the end."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out)},
    ) as box:
        first = box.invoke({})
        second = box.invoke({})
    records = read_probe(probe_out)
    register = next(r for r in records if r["kind"] == "register")
    assert register["status"] == 200
    assert register["body"] == {
        "functionName": "palisade-sandbox",
        "functionVersion": "$LATEST",
        "handler": "app.handler",
    }
    events = [r["event"] for r in records if r["kind"] == "event"]
    invokes = [e for e in events if e["eventType"] == "INVOKE"]
    assert [e["requestId"] for e in invokes] == [first.request_id, second.request_id]
    for event in invokes:
        assert event["invokedFunctionArn"].endswith(":function:palisade-sandbox")
        assert event["deadlineMs"] > time.time() * 1000 - 60_000
        assert event["tracing"]["type"] == "X-Amzn-Trace-Id"
    shutdown = events[-1]
    assert shutdown["eventType"] == "SHUTDOWN"
    assert shutdown["shutdownReason"] == "spindown"
    assert shutdown["deadlineMs"] > time.time() * 1000 - 60_000
    assert records[-1]["kind"] == "exit"


def test_extension_environment_is_reduced(code_dir: Path, probe_out: Path) -> None:
    """Extensions do not get _HANDLER, LAMBDA_TASK_ROOT and the other variables
    Lambda withholds, but do get the runtime API, credentials and user env."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out)},
    ) as box:
        box.invoke({})
    env = read_probe(probe_out)[0]["env"]
    for key in (
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
    ):
        assert key not in env
    for key in (
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_ACCESS_KEY_ID",
        "PROBE_OUT",
        "AWS_LAMBDA_FUNCTION_NAME",
        "PALISADE_EXTENSION_SOCKET",
    ):
        assert key in env
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(
        __import__("sys").executable
    )


def test_telemetry_reaches_the_subscriber(code_dir: Path, probe_out: Path) -> None:
    """A subscribed extension receives the platform records of init and of each
    invoke, including the report with memory and, on the cold start, init time."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out)},
    ) as box:
        first = box.invoke({"action": "print", "text": "hello-from-function"})
        box.invoke({})
    records = read_probe(probe_out)
    subscribe = next(r for r in records if r["kind"] == "subscribe")
    assert subscribe["status"] == 200
    items = [i for r in records if r["kind"] == "telemetry" for i in r["items"]]
    types = [i["type"] for i in items]
    for expected in (
        "platform.initStart",
        "platform.initRuntimeDone",
        "platform.initReport",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "platform.extension",
        "platform.telemetrySubscription",
    ):
        assert expected in types, expected
    assert all(set(i) == {"time", "type", "record"} for i in items)
    report = next(
        i["record"]
        for i in items
        if i["type"] == "platform.report"
        and i["record"]["requestId"] == first.request_id
    )
    metrics = report["metrics"]
    assert metrics["memorySizeMB"] == 128
    assert metrics["maxMemoryUsedMB"] > 0
    assert metrics["billedDurationMs"] >= metrics["durationMs"]
    assert "initDurationMs" in metrics
    done = next(
        i["record"]
        for i in items
        if i["type"] == "platform.runtimeDone"
        and i["record"]["requestId"] == first.request_id
    )
    assert done["status"] == "success" and "durationMs" in done["metrics"]
    logs = [i["record"] for i in items if i["type"] == "function"]
    assert any("hello-from-function" in line for line in logs)
    assert first.logs == ["hello-from-function"]


def test_extension_crash_before_register_fails_init(
    code_dir: Path, probe_out: Path
) -> None:
    """An extension that exits before registering fails init with Extension.Crash;
    the runtime is never started."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out), "PROBE_MODE": "crash"},
    ) as box:
        result = box.invoke({})
        assert box.runtime_pid is None
    assert result.status == "init_error"
    assert result.error is not None
    assert result.error["errorType"] == "Extension.Crash"


def test_extension_init_error_fails_init(code_dir: Path, probe_out: Path) -> None:
    """An extension's /extension/init/error fails init with the type it posted."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out), "PROBE_MODE": "init_error"},
    ) as box:
        result = box.invoke({})
    assert result.status == "init_error"
    assert result.error is not None
    assert result.error["errorType"] == "Extension.ProbeFailed"


def test_extension_that_never_registers_times_out_init(
    code_dir: Path, probe_out: Path
) -> None:
    """Init fails when an extension does not register within the init limit, and
    the stuck extension is killed."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        init_timeout=0.5,
        env={"PROBE_OUT": str(probe_out), "PROBE_MODE": "never_register"},
    ) as box:
        result = box.invoke({})
        pids = [c.pid for c in box.children]
        assert result.status == "init_error"
        assert result.error is not None
        assert result.error["errorType"] == "Sandbox.Timedout"
        assert not any(alive(pid) for pid in pids)


def test_extension_registering_under_another_name_never_completes_init(
    code_dir: Path, probe_out: Path
) -> None:
    """An extension whose Lambda-Extension-Name differs from its file name is not
    the external extension Lambda waits for: init times out and says why."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        init_timeout=0.5,
        env={
            "PROBE_OUT": str(probe_out),
            "PROBE_NAME": "other-name",
            "PROBE_EVENTS": "INVOKE",
        },
    ) as box:
        result = box.invoke({})
    assert result.status == "init_error"
    assert result.error is not None
    assert "must equal the extension's file name" in result.error["errorMessage"]


@pytest.mark.slow
def test_slow_extension_counts_toward_the_timeout(
    code_dir: Path, probe_out: Path
) -> None:
    """The function already answered, but an extension still busy at the timeout
    resets the environment with SHUTDOWN reason timeout and a timeout report."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        timeout=0.5,
        env={
            "PROBE_OUT": str(probe_out),
            "PROBE_MODE": "slow_next",
            "PROBE_SLEEP": "1",
        },
    ) as box:
        result = box.invoke({})
        assert result.ok and result.reset
        assert result.reset_reason == "timeout" and result.timed_out == ["probe"]
        report = [t for t in box.telemetry if t["type"] == "platform.report"][-1]
        assert report["record"]["status"] == "timeout"
        assert box.invoke({}).cold_start
    events = [r["event"] for r in read_probe(probe_out) if r["kind"] == "event"]
    shutdowns = [e for e in events if e.get("eventType") == "SHUTDOWN"]
    assert shutdowns[0]["shutdownReason"] == "timeout"


@pytest.mark.slow
def test_shutdown_kills_an_extension_that_ignores_shutdown(
    code_dir: Path, probe_out: Path
) -> None:
    """An extension still running after the 2 s shutdown budget is SIGKILLed."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        env={"PROBE_OUT": str(probe_out), "PROBE_MODE": "ignore_shutdown"},
    ) as box:
        box.invoke({})
        pid = box.extension_pids["probe"]
    assert not alive(pid)


def test_timeout_sends_shutdown_timeout_to_extensions(
    code_dir: Path, probe_out: Path
) -> None:
    """A function timeout sends SHUTDOWN with reason timeout, then re-inits."""
    with Sandbox(
        "app.handler",
        code_dir,
        moto=False,
        extensions=[PROBE],
        timeout=0.5,
        env={"PROBE_OUT": str(probe_out)},
    ) as box:
        result = box.invoke({"action": "sleep", "seconds": 5})
        assert result.status == "timeout"
        assert result.reset_reason == "timeout" and result.timed_out == ["runtime"]
        after = box.invoke({})
        assert after.cold_start and after.ok
    shutdowns = [
        r["event"]
        for r in read_probe(probe_out)
        if r["kind"] == "event" and r["event"].get("eventType") == "SHUTDOWN"
    ]
    assert [s["shutdownReason"] for s in shutdowns] == ["timeout", "spindown"]


@pytest.mark.aws
def test_function_reaches_moto(code_dir: Path, moto_url: str) -> None:
    """boto3 inside the function talks to the sandbox's moto endpoint."""
    with Sandbox("app.handler", code_dir, aws_endpoint=moto_url) as box:
        result = box.invoke({"action": "dynamodb", "table": f"t{time.time_ns()}"})
    assert result.ok, result.error
    assert result.payload == {"v": "hello", "endpoint": moto_url}


@pytest.mark.aws
@pytest.mark.slow
def test_sandbox_starts_its_own_moto(code_dir: Path) -> None:
    """Without an endpoint the sandbox starts moto on loopback and stops it."""
    with Sandbox("app.handler", code_dir) as box:
        url = box.aws_endpoint
        result = box.invoke({"action": "dynamodb", "table": "own"})
    assert url is not None and url.startswith("http://127.0.0.1:")
    assert result.ok, result.error
    assert result.payload["endpoint"] == url


def test_response_over_six_megabytes_is_refused(code_dir: Path) -> None:
    """A response above Lambda's 6 MB limit becomes Function.ResponseSizeTooLarge."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        result = box.invoke({"action": "big"})
    assert result.status in ("error", "crash")
    assert result.error is not None
    assert result.error["errorType"] == "Function.ResponseSizeTooLarge"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": float("nan")}, "timeout must be a finite number"),
        ({"timeout": float("inf")}, "timeout must be a finite number"),
        ({"timeout": 901}, "(0, 900]"),
        ({"init_timeout": float("nan")}, "init_timeout must be"),
        ({"memory_mb": 64}, "memory_mb must be 128 to 10240"),
        ({"memory_mb": 10241}, "found 10241"),
    ],
)
def test_configuration_outside_lambda_limits_is_refused(
    code_dir: Path, kwargs: dict[str, float], message: str
) -> None:
    """A timeout that is not finite or above 900 s, or a memory size outside
    128-10240 MB, is a ValueError naming the value, before anything starts."""
    with pytest.raises(ValueError, match=re.escape(message)):
        Sandbox("app.handler", code_dir, moto=False, **kwargs)  # type: ignore[arg-type]


def test_event_over_six_megabytes_is_refused_before_invoking(code_dir: Path) -> None:
    """An event over Lambda's 6,291,456-byte synchronous limit raises
    RequestTooLargeError with Lambda's wording; nothing runs (no init, no
    result), and an event exactly at the limit is still invoked."""
    overhead = len(json.dumps({"pad": ""}).encode())
    with Sandbox("app.handler", code_dir, moto=False) as box:
        with pytest.raises(RequestTooLargeError) as caught:
            box.invoke({"pad": "x" * (6_291_456 - overhead + 1)})
        assert caught.value.error_type == "RequestEntityTooLargeException"
        assert caught.value.size == 6_291_457
        assert str(caught.value).startswith(
            "Request must be smaller than 6291456 bytes for the InvokeFunction "
            "operation"
        )
        assert not box.initialized and box.results == []
        result = box.invoke({"pad": "x" * (6_291_456 - overhead)})
    assert result.ok and result.cold_start


def test_event_with_nan_is_refused(code_dir: Path) -> None:
    """NaN is not standard JSON; the sandbox refuses it as Lambda's Invoke does
    instead of letting the runtime fail with Runtime.UnmarshalError."""
    with Sandbox("app.handler", code_dir, moto=False) as box:
        with pytest.raises(ValueError, match="not standard JSON"):
            box.invoke({"a": float("nan")})
        assert box.results == []
