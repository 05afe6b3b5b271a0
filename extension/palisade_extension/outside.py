"""The runtime process seen from outside, through /proc.

Between invokes the extension looks at the runtime process and its descendants:
child processes, TCP/UDP sockets (``/proc/<pid>/fd`` socket inodes joined with
``/proc/<pid>/net/{tcp,tcp6,udp,udp6}``) and loaded shared objects
(``/proc/<pid>/maps``). What the layer's records do not explain is reported in the
batch's ``outside``: a child no process event started, a remote address no network
event connected to, a library no dlopen or import loaded. Each finding is
reported once per extension lifetime.

Finding the runtime: PALISADE_RUNTIME_PID when the host sets it; otherwise the
process whose environment has both ``AWS_LAMBDA_RUNTIME_API`` and ``_HANDLER``
(Lambda gives ``_HANDLER`` to the runtime, never to extensions) and whose parent
is not such a process; failing that, a sibling of the extension with
``AWS_LAMBDA_RUNTIME_API`` that is not an extension.

Limitations: a sample is a snapshot taken after the invocation, so a child that
started and exited within the invocation, or a connection already closed, is not
seen. Libraries present at the first sample are a baseline: only those outside
the system directories and the interpreter's own tree are reported from it. A
sample runs in its own thread, stops after SAMPLE_LIMIT_S (or twice
PALISADE_OUTSIDE_BUDGET_MS, if longer) and
PALISADE_OUTSIDE_MAX_ENTRIES findings, and /next waits for it only
PALISADE_OUTSIDE_BUDGET_MS; what a sample did not reach is not reported. Reading
another process's /proc entries needs the same user, which holds in Lambda
(runtime and extensions share one user).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SYSTEM_PREFIXES = (
    "/lib/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/local/lib/",
    "/var/lang/",
    "/var/runtime/",
    "/opt/python/",
    "/opt/palisade/",
)
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "0A": "LISTEN",
    "08": "CLOSE_WAIT",
}
_CAP = 4096


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _environ(pid: int) -> dict[str, str]:
    data = _read(f"/proc/{pid}/environ") or b""
    found = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            found[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return found


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of a process, from /proc/<pid>/stat."""
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), fields[19].decode()
    except (IndexError, ValueError):
        return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _cmdline(pid: int) -> list[str]:
    data = _read(f"/proc/{pid}/cmdline") or b""
    return [part.decode("utf-8", "replace") for part in data.split(b"\0") if part]


def find_runtime(own_pid: int | None = None) -> int | None:
    """The runtime's pid, found as the module docstring describes; None if unseen.

    Only processes that share this process's AWS_LAMBDA_RUNTIME_API value count,
    so another sandbox on the same machine is never taken for ours.
    """
    me = own_pid or os.getpid()
    api = _environ(me).get("AWS_LAMBDA_RUNTIME_API") or os.environ.get(
        "AWS_LAMBDA_RUNTIME_API", ""
    )
    candidates = []
    others = []
    for pid in _pids():
        if pid == me:
            continue
        env = _environ(pid)
        if env.get("AWS_LAMBDA_RUNTIME_API") != api or not api:
            continue
        if "_HANDLER" in env:
            candidates.append(pid)
        else:
            others.append(pid)
    if candidates:
        parents = {pid: (_stat(pid) or (0, ""))[0] for pid in candidates}
        roots = [pid for pid in candidates if parents[pid] not in parents]
        return min(roots or candidates)
    my_parent = (_stat(me) or (0, ""))[0]
    for pid in sorted(others):
        info = _stat(pid)
        argv = " ".join(_cmdline(pid))
        if info and info[0] == my_parent and "extension" not in argv:
            return pid
    return None


def _decode_address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
        mapped = ipaddress.IPv6Address(ip).ipv4_mapped
        if mapped is not None:
            ip = str(mapped)
    return ip, int(port, 16)


def _net_tables(pid: int) -> list[tuple[str, list[str]]]:
    tables = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        data = _read(f"/proc/{pid}/net/{protocol}") or b""
        tables.append((protocol, data.decode("ascii", "replace").splitlines()[1:]))
    return tables


def sockets_of(
    pid: int, tables: list[tuple[str, list[str]]] | None = None
) -> dict[int, dict[str, Any]]:
    """Socket inode -> {protocol, local, remote, state} for one process.

    ``tables`` are the /proc/net tables of its network namespace when already read.
    """
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return {}
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    found: dict[int, dict[str, Any]] = {}
    if not inodes:
        return found
    for protocol, lines in tables if tables is not None else _net_tables(pid):
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or not parts[9].isdigit():
                continue
            inode = int(parts[9])
            if inode not in inodes:
                continue
            local = _decode_address(parts[1])
            remote = _decode_address(parts[2])
            found[inode] = {
                "protocol": protocol.rstrip("6"),
                "local": local,
                "remote": remote,
                "state": _TCP_STATES.get(parts[3], parts[3]),
            }
    return found


def _has_sockets(pid: int) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(os.path.join(fd_dir, name)).startswith("socket:["):
                return True
        except OSError:
            continue
    return False


def libraries_of(pid: int) -> set[str]:
    """Paths of shared objects mapped into one process."""
    data = _read(f"/proc/{pid}/maps") or b""
    found = set()
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6:
            path = parts[5].strip()
            name = os.path.basename(path)
            if path.startswith("/") and (name.endswith(".so") or ".so." in name):
                found.add(path)
    return found


@dataclass
class _Explained:
    """What the layer's records account for, accumulated over the lifetime."""

    processes: set[str] = field(default_factory=set)
    addresses: set[tuple[str, int]] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    libraries: set[str] = field(default_factory=set)

    def learn(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            for event in record.get("events", []):
                self._learn_event(event)
        for bucket in (self.processes, self.addresses, self.ports, self.libraries):
            while len(bucket) > _CAP:
                bucket.pop()

    def _learn_event(self, event: dict[str, Any]) -> None:
        kind, target = event.get("kind"), str(event.get("target", ""))
        detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
        assert isinstance(detail, dict)
        if kind == "process":
            self.processes.update({target, os.path.basename(target)})
            argv = detail.get("argv")
            if isinstance(argv, list) and argv:
                self.processes.update({str(argv[0]), os.path.basename(str(argv[0]))})
        elif kind == "network":
            port = detail.get("port")
            if not isinstance(port, int):
                tail = target.rpartition(":")[2]
                port = int(tail) if tail.isdigit() else None
            if isinstance(port, int):
                self.ports.add(port)
                if detail.get("ip"):
                    self.addresses.add((str(detail["ip"]), port))
        elif kind == "code":
            self.libraries.update({target, os.path.basename(target)})
            self.libraries.add(target.rpartition(".")[2])


class OutsideView:
    """Samples the runtime process and reports what the records left out."""

    def __init__(
        self,
        runtime_pid: int | None,
        budget_s: float,
        max_entries: int,
        ignore: Iterable[tuple[str, int]] = (),
    ):
        self._fixed_pid = runtime_pid
        self._pid: int | None = runtime_pid
        self._start: str | None = None
        self.budget_s = budget_s
        self.max_entries = max_entries
        self._ignore = set(ignore)
        self._explained = _Explained()
        self._reported: set[tuple[str, str]] = set()
        self._baseline: set[str] | None = None
        self.truncated = 0

    def runtime_pid(self) -> int | None:
        """The runtime's pid, re-found when the process it named has gone."""
        if self._pid is not None:
            info = _stat(self._pid)
            if info is not None and (self._start is None or info[1] == self._start):
                self._start = info[1]
                return self._pid
            self._pid, self._start = None, None
        if self._fixed_pid is not None and _stat(self._fixed_pid) is not None:
            self._pid = self._fixed_pid
        else:
            self._pid = find_runtime()
        if self._pid is not None:
            info = _stat(self._pid)
            self._start = info[1] if info else None
            log.info("outside view: sampling runtime pid %d", self._pid)
        else:
            log.debug("outside view: no runtime process found")
        return self._pid

    def prime(self) -> None:
        """Find the runtime ahead of the sample (the costly part on first use)."""
        self.runtime_pid()

    def sample(
        self, records: list[dict[str, Any]], request_id: str | None
    ) -> list[dict[str, Any]]:
        """Look once; return findings not explained by ``records`` or earlier ones."""
        self._explained.learn(records)
        end = time.monotonic() + self.budget_s
        findings: list[dict[str, Any]] = []
        pid = self.runtime_pid()
        if pid is None:
            return findings
        tree = self._descendants(pid)
        now = time.time()

        def report(kind: str, target: str, detail: dict[str, Any]) -> bool:
            if (kind, target) in self._reported:
                return True
            if len(findings) >= self.max_entries:
                self.truncated += 1
                return False
            self._reported.add((kind, target))
            findings.append(
                {
                    "kind": kind,
                    "target": target,
                    "detail": detail,
                    "observed_at": now,
                    "request_id": request_id,
                }
            )
            return True

        for child, parent in tree:
            if time.monotonic() > end:
                self.truncated += 1
                return findings
            self._check_child(child, parent, report)
        tables: list[tuple[str, list[str]]] | None = None
        for owner in [pid] + [child for child, _ in tree]:
            if time.monotonic() > end:
                self.truncated += 1
                return findings
            tables = self._check_sockets(owner, report, tables)
        if time.monotonic() <= end:
            self._check_libraries(pid, report)
        else:
            self.truncated += 1
        return findings

    def _descendants(self, root: int) -> list[tuple[int, int]]:
        parents: dict[int, int] = {}
        for pid in _pids():
            info = _stat(pid)
            if info:
                parents[pid] = info[0]
        found: list[tuple[int, int]] = []
        frontier = [root]
        while frontier and len(found) < self.max_entries:
            current = frontier.pop()
            for pid, parent in parents.items():
                if parent == current:
                    found.append((pid, parent))
                    frontier.append(pid)
        return found

    def _check_child(self, pid: int, parent: int, report: Any) -> None:
        argv = _cmdline(pid)
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = argv[0] if argv else ""
        names = {exe, os.path.basename(exe)}
        if argv:
            names |= {argv[0], os.path.basename(argv[0])}
        if names & self._explained.processes:
            return
        info = _stat(pid)
        report(
            "process",
            exe or "<unknown>",
            {
                "pid": pid,
                "ppid": parent,
                "argv": argv[:8],
                "start": info[1] if info else None,
            },
        )

    def _check_sockets(
        self, pid: int, report: Any, tables: list[tuple[str, list[str]]] | None
    ) -> list[tuple[str, list[str]]] | None:
        """Report the process's sockets; returns the net tables read (reused for
        the other processes of the tree, which share the namespace in Lambda)."""
        if tables is None and _has_sockets(pid):
            tables = _net_tables(pid)
        if tables is None:
            return None
        for inode, entry in sockets_of(pid, tables).items():
            ip, port = entry["remote"]
            local_ip, local_port = entry["local"]
            if entry["state"] == "LISTEN" or port == 0:
                if entry["protocol"] == "tcp" and entry["state"] == "LISTEN":
                    if local_port in self._explained.ports:
                        continue
                    report(
                        "network",
                        f"listen:{local_ip}:{local_port}",
                        {
                            "pid": pid,
                            "inode": inode,
                            "protocol": "tcp",
                            "state": "LISTEN",
                        },
                    )
                continue
            if (ip, port) in self._ignore:
                continue
            if (ip, port) in self._explained.addresses:
                continue
            host = f"[{ip}]" if ":" in ip else ip
            report(
                "network",
                f"{host}:{port}",
                {
                    "pid": pid,
                    "inode": inode,
                    "ip": ip,
                    "port": port,
                    "protocol": entry["protocol"],
                    "state": entry["state"],
                    "local": f"{local_ip}:{local_port}",
                },
            )
        return tables

    def _check_libraries(self, pid: int, report: Any) -> None:
        libraries = libraries_of(pid)
        prefixes: tuple[str, ...] = SYSTEM_PREFIXES
        try:
            # The interpreter's own tree (/var/lang in Lambda) is the runtime's.
            exe = os.readlink(f"/proc/{pid}/exe")
            prefixes += (os.path.dirname(os.path.dirname(exe)) + "/",)
        except OSError:
            pass
        first = self._baseline is None
        baseline = self._baseline or set()
        for path in sorted(libraries - baseline):
            if first and path.startswith(prefixes):
                continue
            name = os.path.basename(path)
            module = name.split(".", 1)[0]
            if {path, name, module} & self._explained.libraries:
                continue
            report("library", path, {"pid": pid})
        self._baseline = baseline | libraries


# One sample may take this long in its own thread (a busy /proc/net table costs
# tens of milliseconds to read); an invoke waits for it only up to its budget.
SAMPLE_LIMIT_S = 0.25


class Sampler:
    """Runs samples in a background thread so /next never waits on /proc long.

    ``request`` queues a sample of the runtime after an invocation; ``wait``
    gives it up to the invoke's budget; ``take`` hands over every finding ready
    so far. A sample that misses the budget is not lost: its findings ride in a
    later batch (the thread is frozen with the environment and resumes on thaw).
    """

    def __init__(self, view: OutsideView):
        self.view = view
        self._cond = threading.Condition()
        self._jobs: list[tuple[int, list[dict[str, Any]] | None, str | None]] = []
        self._requested = 0
        self._done = 0
        self._findings: list[dict[str, Any]] = []
        self._failed = False
        self._thread = threading.Thread(
            target=self._run, name="palisade-outside", daemon=True
        )
        self._thread.start()

    def prime(self) -> None:
        """Find the runtime now, while the function runs, so the sample after the
        invocation has less to do."""
        with self._cond:
            if self._jobs:
                return
            self._requested += 1
            self._jobs.append((self._requested, None, None))
            self._cond.notify_all()

    def request(self, records: list[dict[str, Any]], request_id: str | None) -> int:
        with self._cond:
            self._requested += 1
            self._jobs.append((self._requested, records, request_id))
            self._cond.notify_all()
            return self._requested

    def wait(self, ticket: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= ticket, max(0.0, timeout))

    def take(self) -> list[dict[str, Any]]:
        with self._cond:
            found, self._findings = self._findings, []
            return found

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                ticket, records, request_id = self._jobs.pop(0)
            found: list[dict[str, Any]] = []
            try:
                if records is None:
                    self.view.prime()
                else:
                    found = self.view.sample(records, request_id)
            except Exception:  # our bug must not stop later samples
                if not self._failed:
                    self._failed = True
                    log.exception("outside view sample failed")
            with self._cond:
                self._findings.extend(found)
                self._done = ticket
                self._cond.notify_all()
