"""The sandbox's file-system view: layer zips, the source-built /opt, the
read-only task copy, and clean removal."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from palisade_sandbox.layout import build_layout, build_source_opt, remove_tree


def test_layer_zip_is_unpacked_with_executable_bits(tmp_path: Path) -> None:
    """A layer zip becomes opt/, keeping the mode bits of its extension file."""
    layer = tmp_path / "layer.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        info = zipfile.ZipInfo("extensions/tool")
        info.external_attr = 0o755 << 16
        archive.writestr(info, "#!/bin/sh\nexit 0\n")
        archive.writestr("python/pkg/__init__.py", "")
    layout = build_layout(tmp_path / "work", None, layer)
    assert [p.name for p in layout.extension_files()] == ["tool"]
    assert os.access(layout.opt / "extensions" / "tool", os.X_OK)
    assert (layout.opt / "python" / "pkg" / "__init__.py").exists()


def test_layer_zip_cannot_escape(tmp_path: Path) -> None:
    """A member with ``..`` in its path is refused."""
    layer = tmp_path / "evil.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        build_layout(tmp_path / "work", None, layer)


def test_source_opt_skips_missing_parts(tmp_path: Path) -> None:
    """Building /opt from a checkout links what exists and skips the rest."""
    repo = tmp_path / "repo"
    (repo / "layer" / "palisade").mkdir(parents=True)
    (repo / "layer" / "palisade" / "__init__.py").write_text("")
    opt = build_source_opt(tmp_path / "opt", repo)
    assert (opt / "python" / "palisade" / "__init__.py").exists()
    assert not (opt / "extensions").exists()
    assert not (opt / "palisade-exec-wrapper").exists()


def test_task_copy_is_read_only_and_removable(tmp_path: Path) -> None:
    """The code is copied without write permission and still removed cleanly."""
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "mod.py").write_text("x = 1\n")
    layout = build_layout(tmp_path / "work", code, None)
    mode = (layout.task / "pkg" / "mod.py").stat().st_mode
    assert not mode & 0o222
    assert not (layout.task / "pkg").stat().st_mode & 0o222
    remove_tree(layout.work)
    assert not layout.work.exists()


def test_non_executable_extension_file_is_not_started(tmp_path: Path) -> None:
    """Only executable files in opt/extensions count as extensions."""
    opt = tmp_path / "opt"
    (opt / "extensions").mkdir(parents=True)
    (opt / "extensions" / "README").write_text("not an extension")
    layout = build_layout(tmp_path / "work", None, opt)
    assert layout.extension_files() == []


def test_work_directory_inside_the_code_is_not_copied_into_itself(
    tmp_path: Path,
) -> None:
    """With the work directory under the code directory (TMPDIR inside the
    project), the task copy leaves the work directory out instead of copying it
    into itself until the path is too long."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (code / "pkg").mkdir()
    (code / "pkg" / "mod.py").write_text("")
    work = code / "scratch" / "palisade-sandbox-x"
    layout = build_layout(work, code, None)
    try:
        assert (layout.task / "app.py").is_file()
        assert (layout.task / "pkg" / "mod.py").is_file()
        assert (layout.task / "scratch").is_dir()
        assert not (layout.task / "scratch" / "palisade-sandbox-x").exists()
    finally:
        remove_tree(work)
