"""Attribution: the package behind each event, skipping the standard library,
Palisade and wrapt; <runtime> and <unknown> when nothing else is on the stack."""

from __future__ import annotations

from pathlib import Path

from layer_harness import run_handler


def _packages(tmp_path: Path) -> str:
    root = tmp_path / "site"
    (root / "thirdpkg" / "inner").mkdir(parents=True)
    (root / "thirdpkg" / "__init__.py").write_text("")
    (root / "thirdpkg" / "inner" / "__init__.py").write_text(
        "import os\ndef listing():\n    return os.listdir('/etc')\n"
    )
    (root / "awslambdaric").mkdir()
    (root / "awslambdaric" / "__init__.py").write_text(
        "import os, threading\n"
        "def poll():\n"
        "    t = threading.Thread(target=lambda: os.listdir('/proc/self'))\n"
        "    t.start()\n"
        "    t.join()\n"
    )
    return (
        f"sys.path.insert(0, {str(root)!r})\n"
        "import thirdpkg.inner, awslambdaric, threading\n"
    )


def test_modules(tmp_path: Path) -> None:
    """A third-party package's call is that package (top level); a stdlib wrapper
    is skipped to the handler (__main__); runtime-only stacks are <runtime>; a
    thread running only stdlib code is <unknown>."""
    body = """
    thirdpkg.inner.listing()
    subprocess.run(['true'])
    awslambdaric.poll()
    t = threading.Thread(target=os.listdir, args=('/root',)); t.start(); t.join()
    """
    run = run_handler(tmp_path, body, setup=_packages(tmp_path))
    by_target = {e["target"]: e["module"] for e in run.events()}
    assert by_target["/etc"] == "thirdpkg", run.describe()
    assert [e["module"] for e in run.events("process")] == ["__main__"]
    assert by_target["/proc/self"] == "<runtime>"
    assert by_target["/root"] == "<unknown>"


def test_attribution_off(tmp_path: Path) -> None:
    """PALISADE_ATTRIBUTION=off skips the frame walk: every module is <unknown>."""
    run = run_handler(
        tmp_path,
        "thirdpkg.inner.listing()",
        setup=_packages(tmp_path),
        PALISADE_ATTRIBUTION="off",
    )
    assert [e["module"] for e in run.events("file", "list")] == ["<unknown>"]


def test_runtime_directory_scripts(tmp_path: Path) -> None:
    """A script directly in LAMBDA_RUNTIME_DIR (the bootstrap, run as __main__) is
    the runtime: its own operations are <runtime>, the handler's are __main__-free."""
    from layer_harness import run_script

    script = "import os, palisade\npalisade.install()\nos.listdir('/etc')\n"
    run = run_script(tmp_path, script, LAMBDA_RUNTIME_DIR=str(tmp_path))
    [event] = [e for e in run.records[0]["events"] if e["op"] == "list"]
    assert event["module"] == "<runtime>"
