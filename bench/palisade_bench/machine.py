"""What the numbers were measured on: machine, interpreter, date and commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_kb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def syscall_us(count: int = 2000) -> float:
    """Median cost of one ``lstat`` here, in µs: how expensive system calls are.

    Context for every per-operation figure: a guard that adds a system call to an
    operation adds this much, and sandboxed or virtualised kernels make it large.
    """
    import time

    samples = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(count):
            os.lstat("/")
        samples.append((time.perf_counter() - began) / count * 1e6)
    return sorted(samples)[len(samples) // 2]


def describe(repo: Path) -> dict[str, Any]:
    """The machine, Python, UTC date and git commit of ``repo`` for a results file."""
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    mem_kb = _memory_total_kb()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": round(mem_kb / 1024) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "load_average_start": _load(),
        "lstat_us": round(syscall_us(), 2),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, to judge how busy the machine was."""
    return _load()


def package(name: str) -> dict[str, str | None]:
    """Name and installed version of a distribution (None when absent)."""
    import importlib.metadata

    try:
        version: str | None = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"name": name, "version": version}
