"""Built-in high-risk rules: behaviour that needs no learning to be suspicious.

Each rule has an id (``builtin:<id>`` in a decision). A triggered rule makes the
verdict at least ``alerted`` in every mode and ``blocked`` when the kind's mode is
``block``, unless the policy allows that exact behaviour with a literal allow rule,
or lists the id in ``builtin.disable``.

Limitations: ``tmp-exec`` knows only the files this engine saw being written,
created, renamed, linked or made executable under the temp directories, remembers
at most ``TmpTracker.LIMIT`` of them (oldest forgotten first), and checks the
executable plus, for known interpreters and dynamic loaders (python, perl, ruby,
node, php, lua, shells, env, ld.so), the arguments; another tool handed such a
file (``xargs``, ``find -exec``) is not recognised.
``ctypes-libc`` recognises libc by file name, so a copy of libc under another
name is not flagged as such (its ``dlsym`` of a dangerous symbol still is).
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Mapping
from typing import Any

from palisade.policy.base import RUNTIME_MODULES, RuntimeFacts, is_environ_path, under
from palisade.policy.matching import IPAddress, embedded_ipv4, parse_ip
from palisade.policy.rules import NetworkSubject, ProcessSubject

BUILTIN_IDS = (
    "shell-spawn",
    "proc-environ-read",
    "metadata-address",
    "runtime-api-access",
    "code-dir-write",
    "tmp-exec",
    "ctypes-libc",
)

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "csh", "tcsh", "fish"}
)
MUTATING_FILE_OPS = frozenset(
    {
        "write",
        "create",
        "delete",
        "rename",
        "chmod",
        "chown",
        "mkdir",
        "link",
        "truncate",
    }
)
EXEC_OPS = frozenset({"spawn", "system", "exec", "pty"})
DANGEROUS_SYMBOLS = frozenset(
    {
        "system",
        "popen",
        "execve",
        "execv",
        "execvp",
        "execvpe",
        "execl",
        "execlp",
        "execle",
        "execveat",
        "fexecve",
        "fork",
        "vfork",
        "clone",
        "clone3",
        "posix_spawn",
        "posix_spawnp",
        "socket",
        "connect",
        "bind",
        "sendto",
        "sendmsg",
        "syscall",
        "mprotect",
        "mmap",
        "ptrace",
        "dlopen",
        "setuid",
        "setgid",
        "unshare",
        "memfd_create",
        "process_vm_writev",
        "PySys_AddAuditHook",
        "PyEval_SetTrace",
        "PyEval_SetProfile",
    }
)
# How the hook may spell ``CDLL(None)``: the process's own global namespace.
PROCESS_NAMESPACE = frozenset({"<process>", "None", ""})
METADATA_ADDRESSES = frozenset({"169.254.169.254", "fd00:ec2::254", "169.254.170.2"})
LINK_LOCAL_V4 = ipaddress.IPv4Network("169.254.0.0/16")
_METADATA = frozenset(ipaddress.ip_address(a) for a in METADATA_ADDRESSES)
# Executables that run a script named in their arguments.
_INTERPRETER = re.compile(
    r"^(?:python[\d.]*|pypy[\d.]*|perl[\d.]*|ruby[\d.]*|node|nodejs|php[\d.]*"
    r"|lua[\d.]*|sh|bash|dash|zsh|ash|ksh|mksh|busybox|env"
    r"|ld-linux[^/]*|ld-musl[^/]*|ld\.so[^/]*)$"
)
_LIBC = re.compile(
    r"^(?:libc(?:\.so(?:\.\d+)*|-[\d.]+\.so)|libc\.musl[^/]*|ld-musl[^/]*)$"
)


def is_metadata_ip(ip: object) -> bool:
    """A metadata or link-local address in any spelling, through IPv6 embeddings."""
    return is_metadata_address(parse_ip(ip))


def is_metadata_address(address: IPAddress | None) -> bool:
    if address is None:
        return False
    if address in _METADATA:
        return True
    inner = embedded_ipv4(address) or address
    return inner in _METADATA or (
        isinstance(inner, ipaddress.IPv4Address) and inner in LINK_LOCAL_V4
    )


def is_libc(target: str) -> bool:
    """``CDLL(None)`` (the process's global namespace) or a libc by file name."""
    if target in PROCESS_NAMESPACE:
        return True
    return _LIBC.match(target.rpartition("/")[2]) is not None


class TmpTracker:
    """Files written or made executable under the temp dirs by this process."""

    LIMIT = 65536

    def __init__(self, tmp_dirs: tuple[str, ...]) -> None:
        self.tmp_dirs = tmp_dirs
        self._paths: dict[str, None] = {}
        self._lock = threading.Lock()

    def in_tmp(self, path: str) -> bool:
        return any(under(path, d) and path != d for d in self.tmp_dirs)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def __len__(self) -> int:
        return len(self._paths)

    def observe(self, op: str, path: str, detail: Mapping[str, Any]) -> None:
        """Update the state from one file event (before its decision)."""
        if op in ("write", "create", "truncate"):
            self._add(path)
        elif op == "chmod":
            mode = detail.get("mode")
            if isinstance(mode, int) and mode & 0o111:
                self._add(path)
        elif op in ("rename", "link"):
            dst = detail.get("dst")
            if isinstance(dst, str):
                self._add(dst)
        elif op == "delete":
            with self._lock:
                self._paths.pop(path, None)

    def _add(self, path: str) -> None:
        if not self.in_tmp(path):
            return
        with self._lock:
            self._paths.pop(path, None)
            self._paths[path] = None
            while len(self._paths) > self.LIMIT:
                del self._paths[next(iter(self._paths))]


class Builtins:
    """Finds which built-in rule, if any, an event triggers."""

    def __init__(
        self, facts: RuntimeFacts, disabled: frozenset[str], tracker: TmpTracker
    ):
        self.facts = facts
        self.enabled = frozenset(BUILTIN_IDS) - disabled
        self.tracker = tracker

    def check(
        self, kind: str, op: str, subject: Any, detail: Mapping[str, Any], module: str
    ) -> str | None:
        found = self._check(kind, op, subject, detail, module)
        return found if found in self.enabled else None

    def _check(
        self, kind: str, op: str, subject: Any, detail: Mapping[str, Any], module: str
    ) -> str | None:
        if kind == "process":
            return self._process(op, subject, detail)
        if kind == "file":
            if op == "read" and is_environ_path(subject):
                return "proc-environ-read"
            if op in MUTATING_FILE_OPS and under(subject, self.facts.task_root):
                return "code-dir-write"
            return None
        if kind == "env":
            return "proc-environ-read" if is_environ_path(subject) else None
        if kind == "network":
            return self._network(op, subject, module)
        if kind == "dns":
            return "metadata-address" if is_metadata_ip(subject) else None
        if kind == "code":
            if op == "dlopen":
                if subject in self.tracker:
                    return "tmp-exec"
                return "ctypes-libc" if is_libc(subject) else None
            if op == "dlsym" and subject in DANGEROUS_SYMBOLS:
                return "ctypes-libc"
        return None

    def _process(
        self, op: str, subject: ProcessSubject, detail: Mapping[str, Any]
    ) -> str | None:
        if op in EXEC_OPS and subject.path in self.tracker:
            return "tmp-exec"
        if (
            op in EXEC_OPS
            and _INTERPRETER.match(subject.name)
            and any(arg in self.tracker for arg in subject.argv)
        ):
            return "tmp-exec"
        if op == "system" or detail.get("shell") is True:
            return "shell-spawn"
        if op in EXEC_OPS:
            if subject.name in SHELLS:
                return "shell-spawn"
            if subject.name == "busybox" and subject.args.split(" ", 1)[0] in SHELLS:
                return "shell-spawn"
        return None

    def _network(self, op: str, subject: NetworkSubject, module: str) -> str | None:
        facts = self.facts
        if is_metadata_address(subject.address):
            if facts.credentials is not None and facts.credentials.matches(subject):
                return None
            return "metadata-address"
        if (
            facts.runtime_api is not None
            and module not in RUNTIME_MODULES
            and facts.runtime_api.matches(subject)
        ):
            return "runtime-api-access"
        return None
