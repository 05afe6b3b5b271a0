"""File operations: one event each, normalised target, verdict per mode, and a
blocked operation has no effect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from layer_harness import EXPECTED, run_handler

CASES = [
    # (name, setup files, body, op, target relative to work dir, effect check)
    # Reads under /tmp are allowed by the built-in base, so reads use /etc/passwd.
    ("read", [], "open('/etc/passwd').read()", "read", "/etc/passwd", None),
    ("write", ["a.txt"], "open(W + '/a.txt', 'w').write('x')", "write", "a.txt", None),
    (
        "create",
        [],
        "open(W + '/new.txt', 'w').write('x')",
        "create",
        "new.txt",
        "absent:new.txt",
    ),
    (
        "os-open-create",
        [],
        "os.close(os.open(W + '/n.txt', os.O_CREAT | os.O_WRONLY))",
        "create",
        "n.txt",
        "absent:n.txt",
    ),
    (
        "io-open",
        [],
        "import io; io.open('/etc/passwd', 'rb').read()",
        "read",
        "/etc/passwd",
        None,
    ),
    (
        "pathlib",
        [],
        "import pathlib; pathlib.Path(W, 'p.txt').write_text('x')",
        "create",
        "p.txt",
        "absent:p.txt",
    ),
    (
        "delete",
        ["a.txt"],
        "os.remove(W + '/a.txt')",
        "delete",
        "a.txt",
        "present:a.txt",
    ),
    (
        "unlink",
        ["a.txt"],
        "os.unlink(W + '/a.txt')",
        "delete",
        "a.txt",
        "present:a.txt",
    ),
    (
        "rename",
        ["a.txt"],
        "os.rename(W + '/a.txt', W + '/b.txt')",
        "rename",
        "a.txt",
        "present:a.txt",
    ),
    (
        "replace",
        ["a.txt"],
        "os.replace(W + '/a.txt', W + '/b.txt')",
        "rename",
        "a.txt",
        "present:a.txt",
    ),
    (
        "chmod",
        ["a.txt"],
        "os.chmod(W + '/a.txt', 0o600)",
        "chmod",
        "a.txt",
        "mode:a.txt",
    ),
    ("chown", ["a.txt"], "os.chown(W + '/a.txt', -1, -1)", "chown", "a.txt", None),
    ("mkdir", [], "os.mkdir(W + '/d')", "mkdir", "d", "absent:d"),
    (
        "symlink",
        ["a.txt"],
        "os.symlink(W + '/a.txt', W + '/l')",
        "link",
        "a.txt",
        "absent:l",
    ),
    ("link", ["a.txt"], "os.link(W + '/a.txt', W + '/h')", "link", "a.txt", "absent:h"),
    (
        "sqlite",
        [],
        "import sqlite3; sqlite3.connect(W + '/db.sqlite').close()",
        "create",
        "db.sqlite",
        "absent:db.sqlite",
    ),
    (
        "truncate",
        ["a.txt"],
        "os.truncate(W + '/a.txt', 0)",
        "truncate",
        "a.txt",
        "size:a.txt",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_file_operation(tmp_path: Path, mode: str, case: tuple) -> None:
    """GIVEN a handler doing one file operation WHEN run in each mode THEN exactly
    one file event with the absolute path and the mode's verdict is recorded, and
    in block mode the operation raised PermissionError and changed nothing."""
    name, files, body, op, rel, effect = case
    work = tmp_path / "work"
    work.mkdir()
    for f in files:
        (work / f).write_text("data")
        (work / f).chmod(0o644)
    run = run_handler(tmp_path, body, setup=f"W = {str(work)!r}", PALISADE_MODE=mode)

    event = run.one("file", op, str(work / rel))
    assert event["module"] == "__main__"
    assert event["verdict"] == EXPECTED[mode], run.describe()
    if name in ("rename", "replace", "symlink", "link"):
        assert event["detail"]["dst"].startswith(str(work))
    if mode == "block":
        assert "PERMISSION palisade blocked file" in run.stdout, run.describe()
        assert run.blocked_lines and run.blocked_lines[0]["event"]["op"] == op
        if effect:
            check, _, what = effect.partition(":")
            if check == "absent":
                assert not os.path.lexists(work / what)
            elif check == "present":
                assert (work / what).exists()
            elif check == "mode":
                assert (work / what).stat().st_mode & 0o777 == 0o644
            elif check == "size":
                assert (work / what).read_text() == "data"
    else:
        assert "RESULT" in run.stdout, run.describe()


def test_paths_are_normalised_before_the_decision(tmp_path: Path) -> None:
    """Relative paths, '//', '/./', '..' and symlinks become one absolute path."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "real.txt").write_text("x")
    os.symlink(work / "real.txt", work / "alias")
    body = """
    os.chdir(W)
    open('sub/../real.txt').read()
    open(W + '//sub/./..//real.txt').read()
    open(W + '/alias').read()
    """
    run = run_handler(tmp_path, body, setup=f"W = {str(work)!r}")
    reads = [e["target"] for e in run.events("file", "read")]
    assert reads == [str((work / "real.txt").resolve())] * 3, run.describe()


def test_listing_sensitive_trees_only(tmp_path: Path) -> None:
    """Listing /etc or /proc is recorded (listdir and scandir); a plain work
    directory is skipped cheaply."""
    work = tmp_path / "work"
    work.mkdir()
    body = """
    os.listdir('/etc')
    list(os.scandir('/proc/self'))
    os.listdir(W)
    """
    run = run_handler(tmp_path, body, setup=f"W = {str(work)!r}", PALISADE_MODE="alert")
    listed = [e["target"] for e in run.events("file", "list")]
    assert listed == ["/etc", "/proc/self"], run.describe()
    assert all(e["verdict"] == "alerted" for e in run.events("file", "list"))


def test_listing_blocked(tmp_path: Path) -> None:
    """A blocked listing raises PermissionError instead of returning names."""
    run = run_handler(tmp_path, "return os.listdir('/etc')", PALISADE_MODE="block")
    assert "PERMISSION" in run.stdout
    assert run.one("file", "list", "/etc")["verdict"] == "blocked"


def test_import_system_reads_are_not_events(tmp_path: Path) -> None:
    """Importing a module after install reads its source, writes its .pyc cache
    and runs its body: that is the import system's work, not file events; from a
    folder outside the code, layer and library dirs, the reads of the module's
    files are code:import events naming them (a module loaded from elsewhere)."""
    pkg = tmp_path / "work"
    pkg.mkdir()
    (pkg / "helper_mod.py").write_text("VALUE = 42\n")
    body = """
    sys.path.insert(0, W)
    import helper_mod
    return helper_mod.VALUE
    """
    run = run_handler(tmp_path, body, setup=f"W = {str(pkg)!r}")
    assert "RESULT 42" in run.stdout
    # Neither the source/.pyc reads nor the __pycache__ write are events.
    assert not [e for e in run.events("file") if e["target"].startswith(str(pkg))]
    assert not run.events("code", "exec")
    imports = run.events("code", "import")
    assert {e["target"] for e in imports} == {"helper_mod"}
    assert imports[0]["detail"] == {}  # the import event itself names no file
    reads = [e["detail"]["file"] for e in imports[1:]]
    assert reads and all(path.startswith(str(pkg) + "/") for path in reads)
