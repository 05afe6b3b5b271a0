"""``palisade layer build`` on a small source tree: layout, modes, budget, bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from palisade_cli import layer
from palisade_cli.interpreters import find_interpreter

REPO = Path(__file__).resolve().parents[2]
# Target wheels are kept between runs (gitignored): only a machine's first build
# reaches the package registry.
WHEEL_CACHE = REPO / "build" / "layer-cache"
pytestmark = pytest.mark.slow


def _fake_checkout(root: Path) -> Path:
    """A checkout with the real in-process package and a minimal extension."""
    shutil.copytree(
        REPO / "layer" / "palisade",
        root / "layer" / "palisade",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "layer" / "palisade" / "tests").mkdir()
    (root / "layer" / "palisade" / "tests" / "test_x.py").write_text("x = 1\n")
    (root / "layer" / "palisade" / "__pycache__").mkdir(exist_ok=True)
    (root / "layer" / "palisade" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")
    wrapper = root / "layer" / "palisade" / "exec-wrapper"
    wrapper.write_text('#!/bin/sh\nexec "$@"\n')
    wrapper.chmod(0o644)  # the build sets the mode itself, whatever the checkout has
    ext = root / "extension" / "palisade_extension"
    ext.mkdir(parents=True)
    (ext / "__init__.py").write_text('"""ext."""\n')
    (root / "extension" / "launcher").write_text("#!/bin/sh\nexec python3 -m x\n")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> layer.BuildResult:
    root = _fake_checkout(tmp_path_factory.mktemp("checkout"))
    return layer.build_layer(
        arch="x86_64", python="3.12", root=root, out=root / "dist", cache=WHEEL_CACHE
    )


def _infos(path: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: info for info in archive.infolist()}


def test_layout_matches_opt_contract(built: layer.BuildResult) -> None:
    """The zip holds exactly the four top-level items /opt expects."""
    names = set(_infos(built.path))
    tops = {name.split("/")[0] for name in names}
    assert tops == {"python", "palisade", "extensions", "palisade-exec-wrapper"}
    assert "python/palisade/__init__.py" in names
    assert "python/palisade/schemas/policy.schema.json" in names
    assert "palisade/palisade_extension/__init__.py" in names
    assert sorted(n for n in names if n.startswith("extensions/")) == [
        "extensions/",
        "extensions/palisade",
    ]


def test_tests_and_caches_are_left_out(built: layer.BuildResult) -> None:
    """Neither test folders nor the build machine's bytecode reach the layer: the
    only .pyc files are the target's own, one per module of the in-process
    package, compiled by the target interpreter when this machine has it."""
    names = list(_infos(built.path))
    assert not [n for n in names if "/tests/" in n]
    pycs = sorted(
        n
        for n in names
        if not n.endswith("/") and (n.endswith(".pyc") or "__pycache__/" in n)
    )
    manifest = json.loads(
        zipfile.ZipFile(built.path).read("palisade/layer-manifest.json")
    )
    if not manifest["bytecode"]:
        assert pycs == []
        return
    expected = sorted(
        f"{n.rsplit('/', 1)[0]}/__pycache__/{n.rsplit('/', 1)[1][:-3]}.cpython-312.pyc"
        for n in names
        if n.startswith("python/palisade/") and n.endswith(".py")
    )
    assert pycs == expected


def test_bytecode_is_used_by_the_target_interpreter(
    built: layer.BuildResult, tmp_path: Path
) -> None:
    """GIVEN the layer unpacked as /opt WHEN the target interpreter imports and
    installs palisade from it THEN none of palisade's modules is compiled (the
    shipped unchecked-hash bytecode is used, as on Lambda's read-only /opt)."""
    python = find_interpreter("3.12")
    if python is None:
        pytest.skip("python3.12 is not on this machine; the layer ships sources")
    layer.extract(built.path, tmp_path / "opt")
    script = (
        "import sys\n"
        "seen = []\n"
        "sys.addaudithook(lambda e, a: seen.append(a[1]) if e == 'compile' and "
        "'palisade' in str(a[1]) else None)\n"
        f"sys.path.insert(0, {str(tmp_path / 'opt' / 'python')!r})\n"
        "import palisade\n"
        f"palisade.install(output='file:{tmp_path / 'out.jsonl'}')\n"
        "print(len(seen), palisade.__file__)\n"
    )
    done = subprocess.run(
        [python, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=tmp_path,
    )
    count, origin = done.stdout.split()
    assert origin.startswith(str(tmp_path / "opt" / "python"))
    assert count == "0", done.stdout


def test_third_party_code_is_built_for_the_target(built: layer.BuildResult) -> None:
    """Compiled modules are CPython 3.12 x86_64 builds, whatever runs the build."""
    names = list(_infos(built.path))
    compiled = [n for n in names if n.endswith(".so")]
    assert any(n.startswith("python/wrapt/") for n in compiled)
    assert any(n.startswith("palisade/rpds/") for n in compiled)
    assert compiled and all("cpython-312-x86_64-linux-gnu" in n for n in compiled)
    with zipfile.ZipFile(built.path) as archive:
        elf = archive.read(next(n for n in compiled if n.startswith("python/wrapt/")))
    assert elf[:4] == b"\x7fELF" and elf[18] == 62  # e_machine EM_X86_64


def test_runtime_provided_packages_are_not_bundled(built: layer.BuildResult) -> None:
    """boto3 and botocore come from the Lambda runtime, never from the layer."""
    names = list(_infos(built.path))
    assert not [n for n in names if n.split("/")[1:2] in (["boto3"], ["botocore"])]
    for dist in ("jsonschema", "referencing", "rpds-py", "PyYAML", "opentelemetry-sdk"):
        assert f"palisade/{dist}" in built.distributions
    assert "python/wrapt" in built.distributions


def test_modes_and_timestamps(built: layer.BuildResult) -> None:
    """Launcher and wrapper are executable, code is 0644, every date is fixed."""
    infos = _infos(built.path)
    mode = {name: (info.external_attr >> 16) for name, info in infos.items()}
    assert stat.S_IMODE(mode["extensions/palisade"]) == 0o755
    assert stat.S_IMODE(mode["palisade-exec-wrapper"]) == 0o755
    assert stat.S_IMODE(mode["python/palisade/__init__.py"]) == 0o644
    assert stat.S_ISDIR(mode["python/"]) and stat.S_IMODE(mode["python/"]) == 0o755
    assert {info.date_time for info in infos.values()} == {layer.FIXED_DATE}
    assert list(infos) == sorted(infos)


def test_sizes_are_reported_and_within_budget(built: layer.BuildResult) -> None:
    """The measured sizes are the real ones and stay under 5 MB zipped."""
    assert built.zipped_bytes == built.path.stat().st_size <= 5_000_000
    with zipfile.ZipFile(built.path) as archive:
        assert built.unzipped_bytes == sum(i.file_size for i in archive.infolist())
    manifest = json.loads(
        zipfile.ZipFile(built.path).read("palisade/layer-manifest.json")
    )
    assert manifest["platform"] == "manylinux2014_x86_64"


def test_build_is_reproducible(built: layer.BuildResult, tmp_path: Path) -> None:
    """A second build of the same sources gives the same bytes."""
    root = built.path.parent.parent
    again = layer.build_layer(
        arch="x86_64", python="3.12", root=root, out=tmp_path, cache=WHEEL_CACHE
    )
    assert again.sha256 == built.sha256
    assert hashlib.sha256(again.path.read_bytes()).hexdigest() == built.sha256


def test_over_budget_fails_and_leaves_no_zip(
    built: layer.BuildResult, tmp_path: Path
) -> None:
    """Past the size budget the build fails, names the sizes and writes nothing."""
    root = built.path.parent.parent
    with pytest.raises(layer.LayerBuildError, match=r"over the budget of 1,000 bytes"):
        layer.build_layer(
            root=root, python="3.12", out=tmp_path, cache=WHEEL_CACHE, max_zipped=1000
        )
    assert list(tmp_path.iterdir()) == []


def test_missing_launcher_is_named(tmp_path: Path) -> None:
    """A checkout without the launcher fails with the path it expected."""
    root = _fake_checkout(tmp_path / "c")
    (root / "extension" / "launcher").unlink()
    with pytest.raises(layer.LayerBuildError, match="extension launcher at"):
        layer.build_layer(root=root, out=tmp_path / "d", cache=WHEEL_CACHE)


def test_cli_rejects_bad_python(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --python is refused with the value found."""
    assert layer.main(["build", "--python", "312"]) == 1
    assert "found '312'" in capsys.readouterr().err


def test_arm64_build_uses_aarch64_wheels(
    built: layer.BuildResult, tmp_path: Path
) -> None:
    """--arch arm64 fetches aarch64 wheels: no x86_64 binary in that zip."""
    root = built.path.parent.parent
    result = layer.build_layer(
        arch="arm64", python="3.12", root=root, out=tmp_path, cache=WHEEL_CACHE
    )
    assert result.path.name == "palisade-layer-arm64.zip"
    compiled = [n for n in _infos(result.path) if n.endswith(".so")]
    assert compiled and all("aarch64-linux-gnu" in n for n in compiled)
