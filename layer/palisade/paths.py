"""Turning whatever a file operation was given into the absolute path decided on.

Paths become absolute against the current directory (or against the directory an
``dir_fd`` points at), lose ``//``, ``/./`` and ``..``, and have symlinks resolved
with ``os.path.realpath``; ``/proc/<own pid>`` becomes ``/proc/self``. None of the
calls used here raises an audit event (``os.getcwd``, ``os.lstat``,
``os.readlink``), so this is safe inside the hook.

Limitation: ``open``'s audit event carries no ``dir_fd``, so ``os.open(name,
dir_fd=fd)`` with a relative name is resolved against the current directory.
"""

from __future__ import annotations

import contextlib
import os
import re

_OWN_PROC = re.compile(r"^/proc/(?:self|thread-self|(\d+))(?=/|$)")
_TASK = re.compile(r"^/proc/self/task/\d+(?=/|$)")
_ENVIRON = re.compile(r"^/proc/self(?:/task/\d+)?/environ$")
_OTHER_PID = re.compile(r"^/proc/(\d+)(?:/|$)")


def fspath(value: object) -> str | None:
    """The text of a path argument, or None for anything that is not a path."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if isinstance(value, os.PathLike):
        return fspath(os.fspath(value))
    return None


def fd_path(fd: int) -> str | None:
    """Where an open descriptor points, through /proc/self/fd (None if unknown)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return target if target.startswith("/") else None


def absolute(value: object, dir_fd: object = None) -> str | None:
    """Absolute, normalised form of a path argument, without resolving links."""
    if isinstance(value, int) and not isinstance(value, bool):
        return fd_path(value)
    path = fspath(value)
    if path is None:
        return None
    if not path.startswith("/"):
        base = None
        if isinstance(dir_fd, int) and not isinstance(dir_fd, bool):
            base = fd_path(dir_fd)
        if base is None:
            try:
                base = os.getcwd()
            except OSError:
                base = "/"
        path = base + "/" + path
    path = os.path.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path


_DIR_CACHE_SIZE = 1024
_dirs: dict[str, str] = {}


def resolve(path: str, follow: bool = True) -> str:
    """Resolve symlinks (as far as the path exists) and name /proc/self plainly.

    Directories are resolved once and cached (at most 1024, outside /proc); the
    last component costs one ``lstat``, and only a link is resolved further.
    ``follow=False`` keeps a final symlink itself (delete, rename, new links).
    Limitation: a directory replaced by a symlink after it was cached is still
    seen at its old place.
    """
    head, _, tail = path.rpartition("/")
    real_head = _dirs.get(head)
    if real_head is None:
        try:
            real_head = os.path.realpath(head or "/")
        except (OSError, ValueError):
            real_head = head or "/"
        if not head.startswith("/proc"):
            if len(_dirs) >= _DIR_CACHE_SIZE:
                _dirs.clear()
            _dirs[head] = real_head
    full = real_head.rstrip("/") + "/" + tail if tail else real_head
    if follow and tail and os.path.islink(full):
        with contextlib.suppress(OSError, ValueError):
            full = os.path.realpath(full)
    return own_proc(full)


def forget() -> None:
    """Drop cached directory resolutions (tests, snapshot restore)."""
    _dirs.clear()


def own_proc(path: str) -> str:
    """Spell this process's /proc entries as /proc/self (and drop task ids)."""
    if not path.startswith("/proc/"):
        return path
    match = _OWN_PROC.match(path)
    if match is not None and (
        match.group(1) is None or int(match.group(1)) == os.getpid()
    ):
        path = "/proc/self" + path[match.end() :]
    match = _TASK.match(path)
    if match is not None and path.endswith("/environ"):
        path = "/proc/self" + path[match.end() :]
    return path


def is_own_environ(path: str) -> bool:
    """True for /proc/self/environ (after :func:`own_proc`)."""
    return _ENVIRON.match(path) is not None


def other_process(path: str) -> int | None:
    """The pid of another process whose /proc entry this path is, else None."""
    match = _OTHER_PID.match(path)
    if match is None:
        return None
    pid = int(match.group(1))
    return None if pid == os.getpid() else pid
