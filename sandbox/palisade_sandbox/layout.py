"""The Lambda file-system view of a sandbox, under one work directory.

    <work>/task/      /var/task: a copy of the code directory, made read-only
    <work>/opt/       /opt: an unpacked layer zip, a given directory, or built from
                      the source checkout (see ``build_source_opt``)
    <work>/tmp/       /tmp (TMPDIR), with tmp/palisade/ for the extension's socket
    <work>/runtime/   /var/runtime: the sandbox's runtime bootstrap

The real ``/opt``, ``/tmp`` and ``/var/task`` are never used; the function and the
extensions learn these paths from the environment (``environment``).

Shortcomings:
    * The task copy is made read-only with file modes only; a process running as
      root can still write to it (Lambda's /var/task is a read-only file system).
    * Code that hard-codes /opt, /tmp or /var/task sees the host's directories.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_SOURCE = Path(__file__).with_name("bootstrap.py")
# (path inside opt, path in the source checkout) for an opt built from source.
SOURCE_OPT: tuple[tuple[str, str], ...] = (
    ("python/palisade", "layer/palisade"),
    ("palisade/palisade_extension", "extension/palisade_extension"),
    ("extensions/palisade", "extension/launcher"),
    ("palisade-exec-wrapper", "layer/palisade/exec-wrapper"),
)


@dataclass
class Layout:
    """Where each Lambda path lives on this machine."""

    work: Path
    task: Path
    opt: Path
    tmp: Path
    runtime: Path

    @property
    def bootstrap(self) -> Path:
        """The runtime bootstrap script (``/var/runtime/bootstrap.py``)."""
        return self.runtime / "bootstrap.py"

    @property
    def extensions_dir(self) -> Path:
        """``/opt/extensions``."""
        return self.opt / "extensions"

    def extension_files(self) -> list[Path]:
        """Every executable regular file in opt/extensions, sorted by name."""
        folder = self.extensions_dir
        if not folder.is_dir():
            return []
        found = []
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and os.access(entry, os.X_OK):
                found.append(entry)
            elif not entry.is_dir():
                log.warning(
                    "%s is not executable; Lambda would fail to start it", entry
                )
        return found


def build_layout(
    work: Path,
    code_dir: Path | None,
    opt: str | Path | None,
    extra_extensions: list[Path] | None = None,
    copy_code: bool = True,
) -> Layout:
    """Create the directories under ``work`` and fill them.

    Args:
        work: an empty (or new) directory owned by the sandbox.
        code_dir: the function's code; None for an empty task directory.
        opt: None (empty /opt), ``"source"`` (built from this checkout), a ``.zip``
            layer to unpack, or a directory to use as /opt as it is.
        extra_extensions: executables to add to opt/extensions (by copy).
        copy_code: copy the code (read-only) rather than use ``code_dir`` in place.
    """
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "tmp"
    (tmp / "palisade").mkdir(parents=True, exist_ok=True)
    runtime = work / "runtime"
    runtime.mkdir(exist_ok=True)
    shutil.copyfile(BOOTSTRAP_SOURCE, runtime / "bootstrap.py")

    if code_dir is None:
        task = work / "task"
        task.mkdir(exist_ok=True)
    elif copy_code:
        task = work / "task"
        shutil.copytree(
            code_dir, task, symlinks=True, ignore=_ignore_for(code_dir, work)
        )
        make_read_only(task)
    else:
        task = Path(code_dir).resolve()

    opt_path = _prepare_opt(work, opt)
    if extra_extensions:
        folder = opt_path / "extensions"
        folder.mkdir(parents=True, exist_ok=True)
        for source in extra_extensions:
            target = folder / source.name
            shutil.copyfile(source, target)
            target.chmod(0o755)
    return Layout(work=work, task=task, opt=opt_path, tmp=tmp, runtime=runtime)


def _ignore_for(
    code_dir: str | Path, work: Path
) -> Callable[[str, list[str]], set[str]]:
    """What the task copy leaves out: bytecode, and the work directory itself
    when it lies inside the code (TMPDIR under the code directory), which would
    otherwise be copied into itself until the path is too long."""
    bytecode = shutil.ignore_patterns("__pycache__", "*.pyc")
    inside = work.resolve()
    nested = Path(code_dir).resolve() in inside.parents

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(bytecode(folder, names))
        if nested:
            skipped.update(n for n in names if (Path(folder) / n).resolve() == inside)
        return skipped

    return ignore


def _prepare_opt(work: Path, opt: str | Path | None) -> Path:
    if opt is None:
        path = work / "opt"
        path.mkdir(exist_ok=True)
        return path
    if opt == "source":
        return build_source_opt(work / "opt")
    source = Path(opt)
    if source.is_file() and zipfile.is_zipfile(source):
        path = work / "opt"
        unpack_layer(source, path)
        return path
    if source.is_dir():
        return source.resolve()
    raise FileNotFoundError(
        f"opt must be None, 'source', a layer .zip or a directory; found {str(opt)!r}"
    )


def build_source_opt(path: Path, repo: Path = REPO_ROOT) -> Path:
    """Build /opt from the source checkout with symlinks; skip missing parts.

    Returns:
        ``path``, holding the parts that exist in ``repo`` (see ``SOURCE_OPT``).
    """
    path.mkdir(parents=True, exist_ok=True)
    for inside, source in SOURCE_OPT:
        origin = repo / source
        if not origin.exists():
            log.info("source opt: %s is absent; running without it", origin)
            continue
        target = path / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(origin)
    return path


def unpack_layer(zip_path: Path, target: Path) -> None:
    """Unpack a layer zip keeping the executable bits recorded in it.

    Raises:
        ValueError: a member would land outside ``target``.
    """
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            dest = (target / info.filename).resolve()
            if root not in dest.parents and dest != root:
                raise ValueError(
                    f"layer member {info.filename!r} would unpack outside {target}; "
                    "rebuild the zip with relative paths"
                )
            archive.extract(info, target)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                dest.chmod(mode)


def make_read_only(path: Path) -> None:
    """Drop write permission below ``path`` (as /var/task is read-only)."""
    for root, dirs, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                file.chmod(file.stat().st_mode & ~0o222)
        Path(root).chmod(Path(root).stat().st_mode & ~0o222)
        del dirs  # walked by os.walk itself


def remove_tree(path: Path) -> None:
    """Delete ``path``, restoring write permission where needed."""

    def _retry(func: object, target: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            parent = os.path.dirname(target)
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
            os.chmod(target, os.stat(target).st_mode | stat.S_IWUSR)
        with contextlib.suppress(OSError):
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.unlink(target)

    for root, dirs, _files in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                full = Path(root, name)
                if not full.is_symlink():
                    full.chmod(full.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
    with contextlib.suppress(OSError):
        path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
    shutil.rmtree(path, onerror=_retry)
