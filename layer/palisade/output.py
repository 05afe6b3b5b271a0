"""JSON lines written straight to a file descriptor.

``stdout`` writes to fd 1; ``file:PATH`` appends to PATH (opened on first use,
created with mode 0600). Lines go out with ``os.write``, which raises no audit
event, so writing from inside the hook cannot recurse; one ``os.write`` per line
keeps lines whole when several threads write at once (``O_APPEND``).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any


class Output:
    """Where records and verdict lines go when not to the extension."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._fd: int | None = 1 if spec == "stdout" else None
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        if self._fd is None:
            path = self.spec[len("file:") :]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def write(self, message: dict[str, Any]) -> None:
        """Write ``message`` as one line.

        Raises:
            OSError: the descriptor cannot be opened or written.
        """
        line = json.dumps(message, separators=(",", ":"), default=str) + "\n"
        data = line.encode("utf-8", "replace")
        with self._lock:
            fd = self._descriptor()
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]

    def after_fork(self) -> None:
        """After fork: a fresh lock (the descriptor is shared and stays valid)."""
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close a file output (stdout stays open)."""
        with self._lock:
            if self._fd is not None and self._fd != 1:
                os.close(self._fd)
            self._fd = 1 if self.spec == "stdout" else None
