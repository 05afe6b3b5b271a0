"""Code loading and environment reads: run-time exec/compile, ctypes, pickle,
marshal, later audit hooks, imports after INIT, /proc environ reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from layer_harness import EXPECTED, run_handler

CASES = [
    ("exec", "exec('x = 1')", "exec", "<string>"),
    ("eval", "eval('1 + 1')", "compile", "<string>"),
    ("compile", "compile('y = 2', 'snippet', 'exec')", "compile", "snippet"),
    ("dlopen", "import ctypes; ctypes.CDLL(None)", "dlopen", "<process>"),
    ("dlsym", "import ctypes; ctypes.CDLL(None).getpid", "dlsym", "getpid"),
    (
        "pickle",
        "import pickle, collections\n"
        "pickle.loads(pickle.dumps(collections.OrderedDict()))",
        "pickle",
        "collections:OrderedDict",
    ),
    (
        "marshal",
        "import marshal; marshal.loads(marshal.dumps(1))",
        "marshal",
        "<bytes>",
    ),
    ("import", "import colorsys", "import", "colorsys"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_code_event(tmp_path: Path, mode: str, case: tuple) -> None:
    """GIVEN a handler loading code WHEN run in each mode THEN one code event of
    that op and target, with the mode's verdict (imports are allowed by the base),
    and in block mode the operation raised PermissionError."""
    name, body, op, target = case
    run = run_handler(tmp_path, body, PALISADE_MODE=mode)
    found = [e for e in run.events("code", op) if e["target"] == target]
    if mode == "block" and name in ("exec", "dlsym"):
        # The step before (compile of the string, dlopen of the library) is
        # already refused, so the operation itself never starts.
        found = [e for e in run.events("code") if e["op"] != "import"]
    assert found, run.describe()
    event = found[0]
    assert event["module"] == "__main__"
    if name == "import":
        assert event["verdict"] == "allowed"
        return
    if name == "dlopen" or name == "dlsym":
        assert event["verdict"] in (EXPECTED[mode], "alerted", "blocked")
    else:
        assert event["verdict"] == EXPECTED[mode], run.describe()
    if mode == "block":
        assert "PERMISSION palisade blocked code" in run.stdout, run.describe()


def test_addaudithook_recorded_and_refused_when_blocked(
    tmp_path: Path, mode: str
) -> None:
    """A later sys.addaudithook is a code:addaudithook event; in block mode CPython
    silently refuses to add the hook (it never sees an event)."""
    body = """
    seen = []
    sys.addaudithook(lambda e, a: seen.append(e) if e == 'test.ping' else None)
    sys.audit('test.ping')
    return len(seen)
    """
    run = run_handler(tmp_path, body, PALISADE_MODE=mode)
    event = run.one("code", "addaudithook")
    assert event["verdict"] == EXPECTED[mode]
    assert f"RESULT {0 if mode == 'block' else 1}" in run.stdout, run.describe()


def test_blocked_exec_does_not_run(tmp_path: Path) -> None:
    """exec of a string that would create a file is stopped before it runs."""
    marker = tmp_path / "ran"
    body = f"exec(\"open({str(marker)!r}, 'w').close()\")"
    run = run_handler(tmp_path, body, PALISADE_MODE="block")
    assert "PERMISSION" in run.stdout and not marker.exists()


def test_init_imports_are_not_events(tmp_path: Path) -> None:
    """Imports made before the first invocation (INIT) are not code:import events."""
    run = run_handler(tmp_path, "return 1", setup="import palisade\nimport csv\n")
    assert not [e for e in run.init["events"] if e["op"] == "import"]


def test_environ_read_own_and_other(tmp_path: Path, mode: str) -> None:
    """/proc/self/environ (any spelling) is env:read, alerted by the built-in rule;
    another process's /proc entry is env:read too; blocked, nothing is read."""
    child = subprocess.Popen(["sleep", "20"], stdout=subprocess.DEVNULL)
    body = f"""
    got = []
    own = '/proc/%d/environ' % os.getpid()
    for path in ('/proc/self/environ', own, '/proc/{child.pid}/cmdline'):
        try:
            got.append(len(open(path, 'rb').read()))
        except PermissionError:
            got.append(None)
    return got
    """
    try:
        run = run_handler(tmp_path, body, PALISADE_MODE=mode)
    finally:
        child.kill()
        child.wait()
    own = run.events("env", "read")
    targets = [e["target"] for e in own]
    assert targets == [
        "/proc/self/environ",
        "/proc/self/environ",
        f"/proc/{child.pid}/cmdline",
    ], run.describe()
    assert own[0]["verdict"] == ("blocked" if mode == "block" else "alerted")
    assert own[0]["rule"] == "builtin:proc-environ-read"
    if mode == "block":
        assert "RESULT [null, null, null]" in run.stdout, run.describe()
    assert os.getpid() != child.pid


IMPORT_FROM_ELSEWHERE = {
    "import statement": "sys.path.insert(0, DROP)\nimport dropped\nX = dropped.X",
    "spec_from_file_location": (
        "spec = importlib.util.spec_from_file_location('m', DROP + '/dropped.py')\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\nX = m.X"
    ),
}


@pytest.mark.parametrize("how", IMPORT_FROM_ELSEWHERE, ids=list(IMPORT_FROM_ELSEWHERE))
def test_module_loaded_from_an_unexpected_folder(
    tmp_path: Path, mode: str, how: str
) -> None:
    """GIVEN a module dropped in a folder outside the code, layer and library dirs
    WHEN the handler imports it (by sys.path, or by file location, which raises no
    import event at all) in each mode
    THEN the import system's read of its file is a code:import event naming the
    file with the mode's verdict, and in block mode the module never runs."""
    drop = tmp_path / "drop"
    drop.mkdir()
    marker = tmp_path / "ran"
    (drop / "dropped.py").write_text(f"open({str(marker)!r}, 'w').close()\nX = 1\n")
    setup = f"import importlib.util, sys\nDROP = {str(drop)!r}\n"
    body = IMPORT_FROM_ELSEWHERE[how]
    run = run_handler(tmp_path, body, setup=setup, PALISADE_MODE=mode)

    found = [
        e
        for e in run.events("code", "import")
        if e["target"] == "dropped" and "file" in e["detail"]
    ]
    assert found, run.describe()
    # The cached bytecode is looked for first, then the source is read.
    assert all(e["detail"]["file"].startswith(str(drop) + "/") for e in found)
    assert {e["verdict"] for e in found} == {EXPECTED[mode]}, run.describe()
    assert marker.exists() == (mode != "block")
