"""The built layer zip, unpacked as /opt, protects a function in the sandbox.

Nothing from the source checkout is on the function's path: the function imports
``palisade`` from <opt>/python and the extension runs from <opt>/palisade, exactly
as Lambda would lay the zip out. The layer is built for this machine (its
architecture and this interpreter's version) because the sandbox runs the function
and the extension with this interpreter.
"""

from __future__ import annotations

import json
import platform
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from palisade_cli import layer

REPO = Path(__file__).resolve().parents[2]
WHEEL_CACHE = REPO / "build" / "layer-cache"
HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HOST_ARCH, reason="layer targets x86_64 and arm64 only"),
]

sandbox = pytest.importorskip(
    "palisade_sandbox", reason="the local sandbox is not in this checkout yet"
)
if not hasattr(sandbox, "Sandbox"):
    pytest.skip("palisade_sandbox has no Sandbox API yet", allow_module_level=True)

APP = textwrap.dedent(
    '''
    import json
    import os
    import subprocess

    import palisade


    def handler(event, context):
        """Report where palisade came from, read a file, then try a shell."""
        with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "app.py")) as f:
            f.read(10)
        try:
            subprocess.run(["/bin/sh", "-c", "echo hi"], check=False)
            shell = "ran"
        except PermissionError as exc:
            shell = f"blocked: {exc}"
        return {"palisade_file": palisade.__file__, "shell": shell}
    '''
)


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built from this checkout for this machine, unpacked."""
    out = tmp_path_factory.mktemp("dist")
    result = layer.build_layer(
        arch=HOST_ARCH, python=HOST_PYTHON, out=out, cache=WHEEL_CACHE
    )
    target = tmp_path_factory.mktemp("opt")
    layer.extract(result.path, target)
    return target


@pytest.fixture(scope="module")
def run(
    opt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Invoke the function once in block mode; its answer and the shipped batches."""
    work = tmp_path_factory.mktemp("function")
    code = work / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    batches_file = work / "batches.jsonl"
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": str(opt / "palisade-exec-wrapper"),
        "PALISADE_MODE": "block",
        "PALISADE_SINK": f"file:{batches_file}",
    }
    with sandbox.Sandbox(
        "app.handler", code_dir=code, opt_dir=opt, env=env, moto=False, timeout=10
    ) as box:
        result = box.invoke({})
        assert result.ok, (result.status, result.error, result.logs)
        payload = result.payload
    # Shutdown flushed the extension: every batch is in the file now.
    batches = [json.loads(line) for line in batches_file.read_text().splitlines()]
    yield payload, batches


def test_palisade_is_imported_from_the_layer(
    run: tuple[dict[str, Any], list[dict[str, Any]]], opt: Path
) -> None:
    """The function's palisade is the one under <opt>/python, not the checkout."""
    payload, _ = run
    assert (
        Path(payload["palisade_file"])
        .resolve()
        .is_relative_to((opt / "python" / "palisade").resolve())
    )
    assert not Path(payload["palisade_file"]).resolve().is_relative_to(REPO)


def test_shell_spawn_is_blocked(
    run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """In block mode the built-in shell rule refuses the spawn before it runs."""
    payload, _ = run
    assert payload["shell"].startswith("blocked:"), payload


def test_events_are_recorded_and_shipped(
    run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """The extension from the zip shipped the invocation's file and process events."""
    _, batches = run
    events = [
        event
        for batch in batches
        for record in batch["records"]
        for event in record.get("events", [])
    ]
    assert any(
        e["kind"] == "file" and e["target"].endswith("/app.py") for e in events
    ), events
    blocked = [e for e in events if e["kind"] == "process"]
    assert blocked and blocked[0]["verdict"] == "blocked", blocked


def _imported_top_levels(package: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_extension_import_is_in_the_layer_or_the_runtime(opt: Path) -> None:
    """What palisade_extension imports is shipped, or provided by Lambda's runtime."""
    wanted = _imported_top_levels(REPO / "extension" / "palisade_extension")
    wanted -= set(sys.stdlib_module_names) | {"palisade_extension", "__future__"}
    runtime = {"boto3", "botocore"}
    shipped = {
        p.name.removesuffix(".py")
        for folder in (opt / "palisade", opt / "python")
        for p in folder.iterdir()
    }
    assert wanted - runtime - shipped == set()
