"""``file:PATH``: one JSON line per batch, appended under an exclusive lock."""

from __future__ import annotations

import fcntl
import hashlib
import os
from typing import Any

from palisade_extension.errors import SinkError
from palisade_extension.sinks.base import encode


class FileSink:
    """Appends each batch as a JSON line to ``path``."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        digest = hashlib.sha256(self.path.encode("utf-8")).hexdigest()[:12]
        self.key = f"file-{digest}"

    def send(self, batch: dict[str, Any]) -> None:
        line = encode(batch) + b"\n"
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SinkError(f"cannot append to {self.path}: {exc}") from exc
