"""Background services the demo starts and always stops: moto and the analyzer.

Both run as child processes on loopback, each on a port it chose itself (bound to
port 0) and reported on its first output line, so the demo never assumes a free
port. Each ``stop`` terminates the child and waits for it (then kills it).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

logger = logging.getLogger(__name__)

_MOTO_CODE = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
"""


class Child:
    """A child process whose first stdout line is its URL; stderr goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        stop_signal: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.env = dict(env) if env is not None else dict(os.environ)
        self.ready_timeout = ready_timeout
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self._log: TextIO | None = None

    def start(self) -> str:
        """Start the child and return the URL it printed.

        Raises:
            RuntimeError: it exited or printed nothing within ``ready_timeout``.
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=self.env,
        )
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(
                self.proc.stdout.readline() if self.proc and self.proc.stdout else ""
            ),
            daemon=True,
        )
        reader.start()
        reader.join(self.ready_timeout)
        found = re.search(r"https?://\S+", line[0]) if line else None
        url = found.group(0) if found else ""
        if not url:
            self.stop()
            raise RuntimeError(
                f"expected {self.name} to print its URL within "
                f"{self.ready_timeout:g} s, got {line[0] if line else ''!r}; "
                f"see {self.log_file}"
            )
        self.url = url
        # Keep draining stdout so the child never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return url

    def _first_line(self) -> str:
        if self.proc is None or self.proc.stdout is None:
            return ""
        return self.proc.stdout.readline()

    def _drain(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        for text in proc.stdout:
            if self._log is not None and not self._log.closed:
                self._log.write(text)

    def stop(self) -> None:
        """SIGTERM or close stdin (the polite stop), then terminate, then kill."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                if self.stop_signal:
                    proc.terminate()
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=3)
            except (subprocess.TimeoutExpired, OSError):
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=3)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Child:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def moto_server(log_file: Path) -> Child:
    """A moto server in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return Child("moto", [sys.executable, "-c", _MOTO_CODE], log_file, env)


def wait_until(check: object, timeout: float, interval: float = 0.1) -> bool:
    """Call ``check()`` until it is true or ``timeout`` passes; return the result."""
    deadline = time.monotonic() + timeout
    while True:
        if callable(check) and check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
