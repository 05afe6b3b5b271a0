"""Child processes of the sandbox: spawn, capture output, freeze, thaw, kill.

Each child starts in its own session, so it leads a process group holding whatever
it spawns; freezing, thawing and killing act on the whole group.

Shortcomings:
    * A grandchild that calls ``setsid()`` itself leaves the group and is neither
      frozen nor killed with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


class Child:
    """One spawned process (the runtime or an extension) and its output.

    Args:
        name: ``runtime`` or the extension's file name.
        argv, env, cwd: how to start it.
        on_line: called with ``(name, stream, line)`` for every output line.
        on_exit: called (from a watcher thread) once the process has exited.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path,
        on_line: Callable[[str, str, str], None] | None = None,
        on_exit: Callable[[Child], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.output: list[tuple[str, str]] = []  # (stream, line)
        self._on_line = on_line
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self._readers = [
            threading.Thread(
                target=self._read,
                args=(stream, label),
                daemon=True,
                name=f"{name}-{label}",
            )
            for stream, label in (
                (self.proc.stdout, "stdout"),
                (self.proc.stderr, "stderr"),
            )
        ]
        for reader in self._readers:
            reader.start()
        self._on_exit = on_exit
        self._watcher = threading.Thread(
            target=self._watch, daemon=True, name=f"{name}-watch"
        )
        self._watcher.start()

    def _watch(self) -> None:
        self.proc.wait()
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("exit callback failed")

    def _read(self, stream: IO[bytes], label: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.output.append((label, line))
            if self._on_line is not None:
                try:
                    self._on_line(self.name, label, line)
                except Exception:  # a logging callback must not kill the reader
                    log.exception("output callback failed")
        with contextlib.suppress(OSError):
            stream.close()

    @property
    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status (negative: killed by that signal), None while running."""
        return self.proc.poll()

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (quietly if it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def freeze(self, settle: float = 1.0) -> bool:
        """SIGSTOP the group and wait (up to ``settle`` s) until it has stopped.

        The signal is asynchronous; waiting makes "frozen" mean stopped.
        Returns whether every member was seen stopped.
        """
        self.signal_group(signal.SIGSTOP)
        deadline = time.monotonic() + settle
        while True:
            states = [process_state(pid) for pid in group_members(self.pid)]
            if all(state in (None, "T", "t", "Z", "X") for state in states):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)

    def thaw(self) -> None:
        """SIGCONT the group."""
        self.signal_group(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the group and reap the leader."""
        self.signal_group(signal.SIGKILL)
        self.signal_group(signal.SIGCONT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for reader in self._readers:
            reader.join(timeout=1)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for exit; True when it exited."""
        try:
            self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        return True

    def describe_exit(self) -> str:
        """How the process ended, in Lambda's words (``exit status 1``,
        ``signal: killed``)."""
        code = self.returncode
        if code is None:
            return "still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            words = {"SIGKILL": "killed", "SIGTERM": "terminated"}
            return f"signal: {words.get(name, name.lower())}"
        return f"exit status {code}"

    def peak_rss_mb(self) -> int | None:
        """Peak resident memory (VmHWM) in MB, None when unreadable."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                return max(1, round(int(line.split()[1]) / 1024))
        return None


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc/<pid>/stat`` (``T`` = stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0]


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members
