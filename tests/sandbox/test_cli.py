"""``palisade invoke``: results, behaviour summary, JSON records, the local
analyzer, and clear one-line errors for mistakes in the command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from palisade_sandbox import cli
from palisade_sandbox.layout import REPO_ROOT
from palisade_sandbox.processes import process_state
from sandbox_testkit import PROBE, write_code

PROTECTED = (REPO_ROOT / "layer" / "palisade" / "exec-wrapper").exists() and (
    REPO_ROOT / "extension" / "launcher"
).exists()
needs_layer = pytest.mark.skipif(
    not PROTECTED, reason="the layer or extension is not in this checkout"
)

FN = """
import os
import subprocess


def handler(event, context):
    with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "app.py")) as f:
        f.read(10)
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    try:
        subprocess.run(["/bin/sh", "-c", "true"], check=False)
        shell = "ran"
    except PermissionError:
        shell = "blocked"
    return {"shell": shell, "event": event}
"""


@pytest.fixture
def fn(tmp_path: Path) -> Path:
    """A function that reads its own file and spawns a shell."""
    return write_code(tmp_path / "fn", {"app.py": FN})


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: handler"),
        (["app.handler", "--bogus"], "unrecognized arguments: --bogus"),
        (["app"], "handler must be module.function"),
        (["missing.handler"], "no module 'missing'"),
        (["app.handler", "--code-dir", "/nonexistent-dir"], "no such directory"),
        (["app.handler", "--event", "/nonexistent.json"], "no such file"),
        (["app.handler", "--events", "BAD"], "line 2 is not valid JSON"),
        (["app.handler", "--event", "BADONE"], "not valid JSON"),
        (["app.handler", "--env", "NOEQUALS"], "--env expects KEY=VALUE"),
        (["app.handler", "--mode", "loud"], "invalid choice: 'loud'"),
        (
            ["app.handler", "--timeout", "0"],
            "--timeout must be a finite number of seconds above 0",
        ),
        (["app.handler", "--timeout", "nan"], "and at most 900"),
        (["app.handler", "--timeout", "inf"], "and at most 900"),
        (["app.handler", "--timeout", "901"], "found 901.0"),
        (["app.handler", "--memory", "-5"], "--memory must be 128 to 10240 MB"),
        (["app.handler", "--memory", "999999999"], "found 999999999"),
        (["app.handler", "--layer", "NOTZIP"], "is a file but not a zip archive"),
        (["app.handler", "--layer", "/nonexistent-layer"], "found nothing at"),
        (["app.handler", "--analyzer", "notaurl"], "--analyzer expects an http"),
        (["app.handler", "--analyzer", "ftp://127.0.0.1/"], "found 'ftp://"),
        (["app.handler", "--analyzer", "http://"], "found 'http://'"),
        (["app.handler", "--analyzer", "http://h:99999"], "--analyzer expects"),
        (["app.handler", "--event", "NAN"], "NaN is not a JSON value"),
        (
            ["app.handler", "--events", "NANLINES"],
            "line 2 is not valid JSON: -Infinity",
        ),
        (["app.handler", "--event", "HUGE"], "the event is 6291457 bytes as JSON"),
        (["app.handler", "--events", "HUGELINES"], "line 2 is 6291457 bytes"),
        (["app.handler", "--policy", "/nonexistent.yaml"], "--policy: no such file"),
        (["app.handler", "--event", "E", "--events", "E"], "not allowed with"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str],
    message: str,
    fn: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each mistake gives exit status 2 and one line on stderr naming it."""
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"ok": 1}\n{oops\n')
    bad_one = tmp_path / "bad.json"
    bad_one.write_text("{oops")
    nan_one = tmp_path / "nan.json"
    nan_one.write_text('{"a": NaN}')
    nan_lines = tmp_path / "nan.jsonl"
    nan_lines.write_text('{"a": 1}\n{"a": -Infinity}\n')
    huge = json.dumps({"pad": "x" * (6_291_456 - len('{"pad": ""}') + 1)})
    huge_one = tmp_path / "huge.json"
    huge_one.write_text(huge)
    huge_lines = tmp_path / "huge.jsonl"
    huge_lines.write_text("{}\n" + huge + "\n")
    not_zip = tmp_path / "notzip.zip"
    not_zip.write_text("not a zip")
    replace = {
        "BAD": str(bad_lines),
        "BADONE": str(bad_one),
        "E": str(bad_one),
        "NAN": str(nan_one),
        "NANLINES": str(nan_lines),
        "NOTZIP": str(not_zip),
        "HUGE": str(huge_one),
        "HUGELINES": str(huge_lines),
    }
    argv = [replace.get(a, a) for a in argv]
    if argv and "--code-dir" not in argv:
        argv += ["--code-dir", str(fn)]
    status, out, err = run(argv, capsys)
    assert status == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("palisade invoke: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_unprotected_run_prints_results(
    fn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without protection the handler runs plainly; a failing invocation makes the
    exit status 1 and its error is printed."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"n": 1}\n\n{"fail": true}\n')
    status, out, _ = run(
        ["app.handler", "--code-dir", str(fn), "--events", str(events), "--no-protect"],
        capsys,
    )
    assert status == 1
    assert "[1]" in out and "success" in out and "cold start" in out
    assert '"shell": "ran"' in out
    assert "[2]" in out and "(warm)" in out
    assert "RuntimeError: asked to fail" in out
    assert "Behaviour: not recorded" in out


@needs_layer
@pytest.mark.slow
def test_protected_run_blocks_and_summarises(
    fn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In block mode the shell spawn is refused inside the function, and the
    summary names the operation, its verdict, rule and package."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"n": 1}\n{"n": 2}\n')
    status, out, _ = run(
        [
            "app.handler",
            "--code-dir",
            str(fn),
            "--events",
            str(events),
            "--mode",
            "block",
        ],
        capsys,
    )
    assert status == 0, out
    assert out.count('"shell": "blocked"') == 2
    assert "Behaviour (every invocation and init):" in out
    summary = out.split("Behaviour", 1)[1]
    assert "blocked  process spawn /bin/sh  by app  [builtin:shell-spawn] x2" in summary
    assert "allowed  file read" in summary and "app.py  by app" in summary


@needs_layer
@pytest.mark.slow
def test_json_prints_one_record_per_line(
    fn: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints the invocation records, with their events and the
    invocation's outcome, one JSON object per line."""
    status, out, _ = run(
        ["app.handler", "--code-dir", str(fn), "--mode", "alert", "--json"], capsys
    )
    assert status == 0
    docs = [json.loads(line) for line in out.splitlines()]
    invocations = [d for d in docs if "invocation" in d]
    assert len(invocations) == 1
    record = invocations[0]
    assert record["schema"] == "palisade.record/1"
    assert record["invocation"]["status"] == "success"
    assert record["invocation"]["payload"]["shell"] == "ran"
    spawn = [e for e in record["events"] if e["kind"] == "process"]
    assert spawn and spawn[0]["verdict"] == "alerted"
    for event in record["events"]:
        assert {"seq", "kind", "op", "target", "module", "verdict", "rule"} <= set(
            event
        )
    assert any(d.get("request_id") == "init" for d in docs)


@needs_layer
@pytest.mark.slow
def test_db_ships_batches_to_a_local_analyzer(
    fn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--db starts an analyzer on the SQLite file; the extension's signed http
    sink stores the run's batches there."""
    db = tmp_path / "analyzer.db"
    status, _, err = run(
        ["app.handler", "--code-dir", str(fn), "--db", str(db)], capsys
    )
    assert status == 0
    assert "batch(es) stored in" in err
    stored = int(err.split("palisade invoke: ", 1)[1].split()[0])
    assert stored >= 1
    with sqlite3.connect(db) as conn:
        tables = {
            row[0]
            for row in conn.execute("select name from sqlite_master where type='table'")
        }
    assert tables


def test_invalid_policy_is_refused_before_anything_starts(
    fn: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An invalid policy file is exit 2 with one line per problem, worded as
    ``palisade policy validate`` words them, and no sandbox is started (it
    would otherwise run in monitor mode whatever --mode says)."""
    from palisade.policy.cli import validate_main

    policy = tmp_path / "p.json"
    policy.write_text('{"mode": 5, "bogus": 1}')
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert validate_main([str(policy)]) == 1
    expected = capsys.readouterr().err.strip().splitlines()
    assert len(expected) >= 2

    status, out, err = run(
        [
            "app.handler",
            "--code-dir",
            str(fn),
            "--policy",
            str(policy),
            "--mode",
            "block",
        ],
        capsys,
    )
    assert status == 2
    assert out == ""
    assert err.strip().splitlines() == [
        f"palisade invoke: error: {line}" for line in expected
    ]
    assert any(f"{policy}: $.mode: " in line for line in expected)
    assert list(scratch.iterdir()) == []


SLEEPER = """
import json
import os
import time


def handler(event, context):
    with open(event["marker"], "w") as f:
        json.dump({"pid": os.getpid(), "task": os.environ["LAMBDA_TASK_ROOT"]}, f)
    time.sleep(60)
"""


@pytest.mark.slow
def test_sigterm_mid_invoke_cleans_up_and_exits_143(tmp_path: Path) -> None:
    """SIGTERM during an invocation shuts the sandbox down like Ctrl-C does: the
    runtime is gone, the work directory removed, one line on stderr, exit 143."""
    code = write_code(tmp_path / "fn", {"app.py": SLEEPER})
    marker = tmp_path / "marker.json"
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"marker": str(marker)}))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    argv = [sys.executable, "-m", "palisade_sandbox.cli", "app.handler"]
    argv += ["--code-dir", str(code), "--event", str(event), "--no-protect"]
    argv += ["--timeout", "60"]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):  # up to 30 s for the handler to start
            if marker.exists() and marker.read_text():
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        inside = json.loads(marker.read_text())
        assert Path(inside["task"]).is_relative_to(scratch)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "palisade invoke: terminated"
    assert "Traceback" not in err
    assert [p.name for p in scratch.iterdir()] == []
    assert process_state(inside["pid"]) in (None, "Z")


@pytest.mark.slow
def test_extension_past_the_timeout_is_reported(
    fn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The function answers in time but an extension is still busy when the
    timeout runs out: the result is shown (as Lambda returns it), a line names
    the extension and the reset, and the next invocation is a cold start."""
    opt = tmp_path / "opt"
    (opt / "extensions").mkdir(parents=True)
    probe = opt / "extensions" / "probe"
    probe.write_bytes(PROBE.read_bytes())
    probe.chmod(0o755)
    out_dir = tmp_path / "probe-out"
    out_dir.mkdir()
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n{}\n")
    argv = ["app.handler", "--code-dir", str(fn), "--events", str(events)]
    argv += ["--layer", str(opt), "--timeout", "0.5"]
    for pair in (f"PROBE_OUT={out_dir}", "PROBE_MODE=slow_next", "PROBE_SLEEP=1"):
        argv += ["--env", pair]
    status, out, _ = run([*argv, "--json"], capsys)
    assert status == 0
    outcomes = [json.loads(line)["invocation"] for line in out.splitlines()]
    assert [o["status"] for o in outcomes] == ["success", "success"]
    assert [o["cold_start"] for o in outcomes] == [True, True]
    assert outcomes[0]["reset_reason"] == "timeout"
    assert outcomes[0]["timed_out"] == ["probe"]

    status, out, _ = run(argv, capsys)
    assert status == 0
    lines = out.splitlines()
    note = [line for line in lines if line.strip().startswith("timeout: probe")]
    assert len(note) == 2 and "environment was reset" in note[0]
