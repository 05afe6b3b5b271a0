"""Progress display: one updating line on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    """Shows what the demo is doing now.

    On a TTY every ``update`` rewrites one line; elsewhere (CI logs, pipes) only
    ``phase`` lines are written, one per line, so the log stays readable.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.started = time.monotonic()
        self.current = ""
        self._dirty = False

    def _elapsed(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def phase(self, text: str) -> None:
        """Start a new phase (always shown)."""
        self.current = text
        if not self.enabled:
            return
        if self.tty:
            self._write_line(f"{self._elapsed()} {text}")
        else:
            self.stream.write(f"{self._elapsed()} {text}\n")
            self.stream.flush()

    def update(
        self, detail: str, done: int | None = None, total: int | None = None
    ) -> None:
        """Progress inside the phase (shown on a TTY only)."""
        if not self.tty:
            return
        count = f" {done}/{total}" if done is not None and total else ""
        self._write_line(f"{self._elapsed()} {self.current}{count}: {detail}")

    def _write_line(self, text: str) -> None:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()
        self._dirty = True

    def done(self) -> None:
        """End the updating line so the report starts on a fresh one."""
        if self.tty and self._dirty:
            self.stream.write("\n")
            self.stream.flush()
            self._dirty = False
