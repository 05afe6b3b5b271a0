"""Finding a given CPython MAJOR.MINOR on this machine.

pyenv's shims on PATH answer only for the versions pyenv has selected, so a
``pythonX.Y`` found on PATH is probed, and pyenv's own versions folder is searched
too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def candidates(version: str) -> list[str]:
    """Places a ``pythonX.Y`` may live: PATH first, then pyenv's versions."""
    found = []
    exe = shutil.which(f"python{version}")
    if exe is not None:
        found.append(exe)
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        pattern = f"versions/{version}.*/bin/python{version}"
        found += sorted(str(p) for p in Path(root).glob(pattern))
    return found


def find_interpreter(version: str) -> str | None:
    """The path of a working CPython ``version`` (``3.12``), or None."""
    for exe in candidates(version):
        probe = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return exe
    return None
