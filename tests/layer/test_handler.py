"""The handler entry points: protect/decorator pass everything through unchanged,
the redirect entry imports the real handler under the guard, the exec wrapper
sets the variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from layer_harness import LAYER, child_env, run_script

PASS_THROUGH = """
import json, sys, traceback
import palisade

class Boom(ValueError):
    pass

ERR = Boom("exact message")

def failing(event, context):
    raise ERR

def echo(event, *args, **kwargs):
    return {"event": event, "args": [repr(a) for a in args], "kwargs": sorted(kwargs)}

@palisade.protect
def decorated(event, context):
    return event

@palisade.protect(mode="alert")
def decorated_with_args(event, context):
    return event

out = {}
for value in ({"a": 1}, [1, 2], None, 3.5, "text"):
    assert decorated(value, None) is value
assert decorated_with_args([1], None) == [1]
result = palisade.protect(echo)({"k": "v"}, "ctx", 3, flag=True)
out["echo"] = result
try:
    palisade.protect(failing)({}, None)
except Boom as exc:
    out["same"] = exc is ERR
    out["message"] = str(exc)
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    out["innermost"] = frames[-1]
    out["frames"] = frames
class Callable:
    def __call__(self, event, context):
        return "called"
out["callable"] = palisade.protect(Callable())({}, None)
print("OUT " + json.dumps(out))
"""


def test_protect_passes_everything_through(tmp_path: Path) -> None:
    """Results are the same objects; any JSON event type and extra args work; a
    user exception is the same object with its message and innermost frame."""
    run = run_script(tmp_path, PASS_THROUGH)
    assert run.returncode == 0, run.describe()
    out = json.loads(run.stdout.partition("OUT ")[2])
    assert out["echo"] == {
        "event": {"k": "v"},
        "args": ["'ctx'", "3"],
        "kwargs": ["flag"],
    }
    assert out["same"] is True and out["message"] == "exact message"
    assert out["innermost"] == "failing"
    # The wrapper removes its own frame (3.11+; on 3.10 one wrapper frame stays).
    own = 0 if sys.version_info >= (3, 11) else 1
    assert out["frames"] == ["<module>"] + ["palisade_handler"] * own + ["failing"]
    assert out["callable"] == "called"
    outcomes = [r["outcome"] for r in run.invocations]
    assert outcomes.count("error") == 1 and "blocked" not in outcomes
    errored = next(r for r in run.invocations if r["outcome"] == "error")
    assert errored["error_type"] == "Boom"


def test_powertools_decorated_handler(tmp_path: Path) -> None:
    """A handler decorated by Powertools' logger works unchanged under protect."""
    pytest.importorskip("aws_lambda_powertools")
    script = """
import json, types
import palisade
from aws_lambda_powertools import Logger
logger = Logger(service="svc")

@palisade.protect
@logger.inject_lambda_context
def handler(event, context):
    return {"ok": event["n"]}

ctx = types.SimpleNamespace(function_name="f", memory_limit_in_mb=128,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
    aws_request_id="req-pt")
print("OUT " + json.dumps(handler({"n": 2}, ctx)))
"""
    run = run_script(tmp_path, script)
    assert 'OUT {"ok": 2}' in run.stdout, run.describe()
    assert [r["request_id"] for r in run.invocations] == ["req-pt"]


def _app(tmp_path: Path) -> Path:
    code = tmp_path / "task"
    (code / "pkg" / "sub").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "sub" / "__init__.py").write_text("")
    (code / "pkg" / "sub" / "app.py").write_text(
        "import os\n"
        "os.listdir('/etc')  # at import: INIT activity\n"
        "def handler(event, context):\n"
        "    os.listdir('/proc')\n"
        "    return {'echo': event}\n"
        "class Handler:\n"
        "    def __call__(self, event, context):\n"
        "        return 'object'\n"
        "obj = Handler()\n"
    )
    return code


REDIRECT = """
import json, sys, types
sys.path.insert(0, sys.argv[1])
import palisade.handler
ctx = types.SimpleNamespace(aws_request_id="req-1")
print("OUT " + json.dumps(palisade.handler.handler({"x": 1}, ctx)))
"""


@pytest.mark.parametrize(
    "name", ["pkg.sub.app.handler", "pkg/sub/app.handler", "pkg.sub.app.obj"]
)
def test_redirect_entry(tmp_path: Path, name: str) -> None:
    """palisade.handler installs first, then imports PALISADE_HANDLER: import-time
    activity is in the INIT record (request_id init), the call in its own."""
    code = _app(tmp_path)
    run = run_script(tmp_path, REDIRECT, args=[str(code)], PALISADE_HANDLER=name)
    assert run.returncode == 0, run.describe()
    expected = "object" if name.endswith("obj") else {"echo": {"x": 1}}
    assert "OUT " + json.dumps(expected) in run.stdout, run.describe()
    init_targets = [e["target"] for e in run.init["events"]]
    assert "/etc" in init_targets and all(
        e["request_id"] == "init" for e in run.init["events"]
    )
    assert run.init["outcome"] == "init"
    [record] = run.invocations
    assert record["request_id"] == "req-1"
    if not name.endswith("obj"):
        assert [e["target"] for e in record["events"]] == ["/proc"]


@pytest.mark.parametrize(
    ("name", "fallback", "fault", "text"),
    [
        (
            "nosuchmodule.handler",
            "ImportError",
            "Runtime.ImportModuleError",
            "Unable to import module 'nosuchmodule'",
        ),
        (
            "pkg.sub.app.missing",
            "AttributeError",
            "Runtime.HandlerNotFound",
            "Handler 'missing' missing on module 'pkg.sub.app'",
        ),
        ("nodot", "ValueError", "Runtime.MalformedHandlerName", "Bad handler 'nodot'"),
    ],
)
@pytest.mark.parametrize("with_runtime", [False, True])
def test_bad_handler_fails_like_lambda(
    tmp_path: Path, name: str, fallback: str, fault: str, text: str, with_runtime: bool
) -> None:
    """A missing module, missing function or malformed name fails at import with
    the runtime's own fault type when awslambdaric is loaded, else a plain error
    with the same message."""
    if with_runtime:
        pytest.importorskip("awslambdaric")
    code = _app(tmp_path)
    script = (
        "import sys\nsys.path.insert(0, sys.argv[1])\n"
        + (
            "import awslambdaric.lambda_runtime_exception as r\n"
            if with_runtime
            else ""
        )
        + "try:\n    import palisade.handler\nexcept Exception as exc:\n"
        "    print('TYPE', type(exc).__name__, getattr(exc, 'exception_type', ''))\n"
        "    print('MSG', getattr(exc, 'msg', None) or exc)\n"
    )
    run = run_script(tmp_path, script, args=[str(code)], PALISADE_HANDLER=name)
    if with_runtime:
        assert f"TYPE FaultException {fault}" in run.stdout, run.describe()
    else:
        assert f"TYPE {fallback}" in run.stdout, run.describe()
    assert text in run.stdout


def test_exec_wrapper(tmp_path: Path) -> None:
    """The wrapper keeps _HANDLER in PALISADE_HANDLER, points _HANDLER at the
    redirect, leaves PYTHONPATH alone and execs its arguments."""
    wrapper = LAYER / "palisade" / "exec-wrapper"
    assert os.access(wrapper, os.X_OK)
    env = {"PATH": os.environ["PATH"], "_HANDLER": "app.handler", "PYTHONPATH": "/keep"}
    done = subprocess.run(
        [str(wrapper), "env"], env=env, capture_output=True, text=True, check=True
    )
    lines = set(done.stdout.splitlines())
    assert {
        "PALISADE_HANDLER=app.handler",
        "_HANDLER=palisade.handler.handler",
        "PYTHONPATH=/keep",
    } <= lines
    assert child_env(tmp_path)  # the harness itself is importable


def test_policy_errors(tmp_path: Path) -> None:
    """An invalid policy with on_error=open runs in monitor mode and reports the
    field path and value at INIT; with closed, install raises PolicyError."""
    bad = '{"version": 1, "network": {"allow": [{"ports": ["https"]}]}}'
    script = (
        "import palisade\n"
        "h = palisade.protect(lambda e, c: 'ran')\n"
        "print('OUT', h({}, None))\n"
    )
    run = run_script(tmp_path, script, PALISADE_POLICY=bad, PALISADE_MODE="block")
    assert "OUT ran" in run.stdout, run.describe()
    issues = run.init["policy_error"]
    assert issues and "network" in issues[0]["path"], issues
    assert run.init["mode"] == "monitor"
    assert [line for line in run.lines if line.get("palisade") == "policy-error"]

    closed = run_script(
        tmp_path, script, PALISADE_POLICY=bad, PALISADE_ON_ERROR="closed"
    )
    assert closed.returncode != 0 and "PolicyError" in closed.stderr
    assert "OUT" not in closed.stdout


def test_bad_setting_names_variable(tmp_path: Path) -> None:
    """A bad PALISADE_MODE stops install with a ConfigError naming it."""
    script = "import palisade\npalisade.install()\n"
    run = run_script(tmp_path, script, PALISADE_MODE="strict")
    assert "ConfigError" in run.stderr and "PALISADE_MODE" in run.stderr
    assert "'strict'" in run.stderr and "monitor, alert or block" in run.stderr


def test_stdout_output_and_limits(tmp_path: Path) -> None:
    """PALISADE_OUTPUT=stdout writes JSON lines; PALISADE_MAX_EVENTS bounds the
    buffer and counts the rest in 'dropped'; a second install is a no-op."""
    script = (
        "import os, palisade\n"
        "g = palisade.install()\nassert palisade.install() is g\n"
        "h = palisade.protect(lambda e, c: [os.listdir('/etc') for _ in range(10)])\n"
        "h({}, None)\n"
    )
    env = child_env(tmp_path, PALISADE_OUTPUT="stdout", PALISADE_MAX_EVENTS="3")
    run = run_script(tmp_path, script, env=env)
    import json

    records = [
        json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")
    ]
    [record] = [r for r in records if r["request_id"] != "init"]
    assert len(record["events"]) == 3 and record["dropped"] == 7


def test_fail_open_on_own_error(tmp_path: Path) -> None:
    """A bug inside Palisade (here: the engine raising) lets the operation run,
    is counted in 'errors' and logged once with its traceback."""
    script = (
        "import os, palisade, palisade.hook\n"
        "palisade.install()\n"
        "def boom(*a):\n    raise RuntimeError('engine bug')\n"
        "palisade.hook.engine.decide = boom\n"
        "h = palisade.protect(lambda e, c: len(os.listdir('/etc')) > 0)\n"
        "print('OUT', h({}, None))\n"
        "os.listdir('/etc')\n"
    )
    run = run_script(
        tmp_path, script, PALISADE_MODE="block", PALISADE_LOG_LEVEL="WARNING"
    )
    assert "OUT True" in run.stdout, run.describe()
    [record] = run.invocations
    assert record["errors"] == 1 and record["events"][0]["rule"] == "error"
    assert (
        run.stderr.count("RuntimeError: engine bug") == 1 and "Traceback" in run.stderr
    )


def test_reset_for_tests_allows_a_new_install(tmp_path: Path) -> None:
    """The test-only reset makes the guard inert (events stop) and lets install
    run again with other settings, without adding a second hook."""
    script = (
        "import os, palisade, palisade.guard\n"
        "first = palisade.install(mode='alert')\n"
        "palisade.guard._reset_for_tests()\n"
        "os.listdir('/etc')  # inert: not recorded anywhere\n"
        "second = palisade.install(mode='block')\n"
        "print('OUT', first is not second, second.engine.mode)\n"
        "try:\n    palisade.protect(lambda e, c: os.listdir('/root'))({}, None)\n"
        "except PermissionError:\n    print('BLOCKED')\n"
    )
    run = run_script(tmp_path, script)
    assert "OUT True block" in run.stdout and "BLOCKED" in run.stdout, run.describe()
    assert [e["target"] for e in run.events("file", "list")] == ["/root"]
    assert len(run.blocked_lines) == 1


def test_protecting_twice_records_once(tmp_path: Path) -> None:
    """protect over an already protected handler (the redirect entry over a
    decorated one) keeps one record per invocation."""
    script = (
        "import palisade\n"
        "h = palisade.protect(palisade.protect(lambda e, c: e))\n"
        "print('OUT', h(5, None))\n"
    )
    run = run_script(tmp_path, script)
    assert "OUT 5" in run.stdout
    assert len(run.invocations) == 1, run.describe()
