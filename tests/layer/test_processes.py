"""Process launches: every API yields one process event with the absolute
executable, and in block mode the program never ran (its marker file is absent)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from layer_harness import EXPECTED, run_handler

TOUCH = shutil.which("touch") or "/usr/bin/touch"
SH = "/bin/sh"

CASES = [
    # name, body (M is the marker path), op, target, shell
    ("popen-list", "subprocess.run(['touch', M], check=True)", "spawn", TOUCH, False),
    (
        "popen-args-keyword",
        "subprocess.Popen(args=['touch', M]).wait()",
        "spawn",
        TOUCH,
        False,
    ),
    (
        "popen-string-shell",
        "subprocess.run('touch ' + M, shell=True, check=True)",
        "spawn",
        SH,
        True,
    ),
    (
        "popen-sh-c",
        "subprocess.run(['sh', '-c', 'touch ' + M], check=True)",
        "spawn",
        shutil.which("sh"),
        True,
    ),
    ("os-system", "os.system('touch ' + M)", "system", SH, True),
    (
        "posix-spawn",
        "os.waitpid(os.posix_spawn(TOUCH, ['touch', M], dict(os.environ)), 0)",
        "spawn",
        TOUCH,
        False,
    ),
    (
        "posix-spawnp",
        "os.waitpid(os.posix_spawnp('touch', ['touch', M], dict(os.environ)), 0)",
        "spawn",
        TOUCH,
        False,
    ),
    ("spawnv", "os.spawnv(os.P_WAIT, TOUCH, ['touch', M])", "spawn", TOUCH, False),
    ("spawnlp", "os.spawnlp(os.P_WAIT, 'touch', 'touch', M)", "spawn", TOUCH, False),
    (
        "fork-exec-direct",
        "import multiprocessing.util as u\n"
        "pid = u.spawnv_passfds(os.fsencode(TOUCH), ['touch', M], [])\n"
        "os.waitpid(pid, 0)",
        "spawn",
        TOUCH,
        False,
    ),
    ("pty-spawn", "import pty; pty.spawn(['touch', M])", "pty", TOUCH, False),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_process_launch(tmp_path: Path, mode: str, case: tuple) -> None:
    """GIVEN a handler launching `touch MARKER` WHEN run in each mode THEN one
    process event names the resolved executable with the mode's verdict; in block
    mode PermissionError was raised and the marker does not exist."""
    _name, body, op, target, shell = case
    marker = tmp_path / "marker"
    setup = f"M = {str(marker)!r}\nTOUCH = {TOUCH!r}"
    run = run_handler(tmp_path, body, setup=setup, PALISADE_MODE=mode)

    launches = run.events("process")
    assert len(launches) == 1, run.describe()
    event = launches[0]
    assert (event["op"], event["target"]) == (op, target), run.describe()
    assert event["detail"]["shell"] is shell
    assert str(marker) in " ".join(event["detail"]["argv"])
    assert event["module"] == "__main__"
    if shell:
        # The built-in shell rule decides: alerted unless blocked.
        assert event["verdict"] == ("blocked" if mode == "block" else "alerted")
    else:
        assert event["verdict"] == EXPECTED[mode], run.describe()
    if mode == "block":
        assert "PERMISSION palisade blocked process" in run.stdout, run.describe()
        assert not marker.exists()
    else:
        assert marker.exists(), run.describe()


@pytest.mark.parametrize("mode_", ["monitor", "block"])
def test_fork(tmp_path: Path, mode_: str) -> None:
    """os.fork is one process:fork event; blocked, no child exists."""
    marker = tmp_path / "child"
    body = f"""
    pid = os.fork()
    if pid == 0:
        open({str(marker)!r}, 'w').close()
        os._exit(0)
    os.waitpid(pid, 0)
    """
    run = run_handler(tmp_path, body, PALISADE_MODE=mode_)
    event = run.one("process", "fork")
    assert event["target"] == sys.executable
    assert event["verdict"] == EXPECTED[mode_]
    assert marker.exists() is (mode_ == "monitor")


@pytest.mark.parametrize("mode_", ["alert", "block"])
def test_kill_other_process_not_self(tmp_path: Path, mode_: str) -> None:
    """os.kill of another pid is an event (blocked: the process survives); a
    signal to the process itself is not recorded."""
    body = """
    import signal
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = subprocess.Popen(['sleep', '30'], **quiet)
    os.kill(os.getpid(), 0)
    try:
        os.kill(child.pid, signal.SIGTERM)
    except PermissionError:
        pass
    return {'pid': child.pid, 'alive': child.poll() is None}
    """
    # Allow the helper process itself so only the kill is decided by mode.
    policy = '{"version": 1, "process": {"allow": [{"exec": "sleep"}]}}'
    run = run_handler(tmp_path, body, PALISADE_MODE=mode_, PALISADE_POLICY=policy)
    result = json.loads(run.stdout.partition("RESULT ")[2] or "null")
    assert result is not None, run.describe()
    try:
        kill = run.one("process", "kill")
        assert kill["target"] == str(result["pid"])
        assert kill["detail"]["signal"] == signal.SIGTERM
        assert kill["verdict"] == EXPECTED[mode_], run.describe()
        if mode_ == "block":
            os.kill(result["pid"], 0)  # still alive: raises if it is gone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(result["pid"], signal.SIGKILL)


def test_popen_reported_once_with_posix_spawn_and_fork_exec(tmp_path: Path) -> None:
    """A subprocess launch is one event even where the interpreter also raises
    os.posix_spawn (3.13) or goes through the wrapped fork_exec."""
    body = """
    subprocess.run(['true'])
    subprocess.run(['true'], close_fds=False)
    subprocess.run(['true'], cwd='/')
    """
    run = run_handler(tmp_path, body)
    assert len(run.events("process")) == 3, run.describe()
    assert {e["target"] for e in run.events("process")} == {shutil.which("true")}


@pytest.mark.parametrize("mode_", ["alert", "block"])
def test_killpg_other_group(tmp_path: Path, mode_: str) -> None:
    """os.killpg of another process group is an event; blocked, the group lives."""
    child = subprocess.Popen(
        ["sleep", "30"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    body = f"""
    import signal
    try:
        os.killpg({child.pid}, signal.SIGTERM)
    except PermissionError:
        pass
    """
    try:
        run = run_handler(tmp_path, body, PALISADE_MODE=mode_)
        event = run.one("process", "kill", f"pgid:{child.pid}")
        assert event["verdict"] == EXPECTED[mode_]
        child_status = child.wait(5) if mode_ == "alert" else child.poll()
        assert (child_status is None) is (mode_ == "block")
    finally:
        child.kill()
        child.wait()
