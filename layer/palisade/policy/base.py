"""The built-in base: what the Python runtime itself needs, allowed before any policy.

Every policy extends this base; a policy names only what the function itself does.
The base is computed once, at engine load, from the environment and the running
interpreter (``sys.prefix``, ``site``, ``sysconfig``); deciding an event against it
never performs I/O.

Limitations: the base trusts every file under the interpreter's prefixes, the
code directory and ``/opt`` for reading, so a policy cannot narrow reads there;
``exec``/``compile``/``marshal`` are base-allowed only when the hook reports the
immediate caller in ``detail["caller"]`` and that caller is the standard library.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import site
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from palisade.policy.matching import canonical_ip, normal_name, split_hostport
from palisade.policy.rules import NetworkSubject

# Modules that make up the Lambda runtime itself. ``<runtime>`` is the name the
# hook gives to code under /var/runtime that has no package of its own.
RUNTIME_MODULES = frozenset(
    {"awslambdaric", "bootstrap", "lambda_runtime_client", "<runtime>"}
)

# Callers that are the import system itself (frozen modules have no package).
IMPORT_SYSTEM = frozenset(
    {"importlib", "_frozen_importlib", "_frozen_importlib_external", "zipimport"}
)
STDLIB_MODULES = frozenset(sys.stdlib_module_names) | IMPORT_SYSTEM

DEFAULT_TASK_ROOT = "/var/task"
DEFAULT_EXTENSION_DIR = "/tmp/palisade"
READ_OPS = frozenset({"read", "list"})

_ENVIRON = re.compile(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/environ$")
_FIXED_READ_DIRS = (
    "/opt",
    "/var/runtime",
    "/var/lang",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/share/zoneinfo",
    "/usr/lib/locale",
)
_FIXED_READ_FILES = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/services",
    "/etc/protocols",
    "/etc/mime.types",
    "/etc/os-release",
    "/dev/urandom",
    "/dev/random",
    "/dev/null",
)
_CERT_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "AWS_CA_BUNDLE",
)


def is_environ_path(path: str) -> bool:
    """``/proc/self/environ`` and every other process or thread's environ file."""
    return _ENVIRON.match(path) is not None


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


@dataclass(frozen=True)
class Endpoint:
    """A host:port the base or a built-in rule knows by configuration."""

    host: str
    ip: str | None
    port: int | None

    def matches(self, subject: NetworkSubject) -> bool:
        if self.port is not None and subject.port != self.port:
            return False
        return (self.ip is not None and subject.ip == self.ip) or (
            self.host in subject.names
        )

    def names_lookup(self, name: str) -> bool:
        return normal_name(name) == self.host or canonical_ip(name) == (self.ip or "")


def parse_endpoint(text: str | None, *, url: bool = False) -> Endpoint | None:
    """``host:port`` (or a URL when ``url``) as an Endpoint; None when unusable."""
    if not text:
        return None
    port: int | None
    if url:
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return None
    else:
        host, port = split_hostport(text.strip())
    if not host:
        return None
    ip = canonical_ip(host)
    name = normal_name(host) if ip is None else ip
    if name == "localhost":
        ip = "127.0.0.1"
    return Endpoint(name, ip, port)


@dataclass(frozen=True)
class RuntimeFacts:
    """What the engine knows about its environment, read once at load."""

    task_root: str
    tmp_dirs: tuple[str, ...]
    home: str | None
    runtime_api: Endpoint | None
    credentials: Endpoint | None
    extension_dirs: tuple[str, ...]
    extension_socket: str | None

    @property
    def path_variables(self) -> dict[str, str | None]:
        return {
            "$TASK_ROOT": self.task_root,
            "$TMP": self.tmp_dirs[0],
            "$HOME": self.home,
        }


def runtime_facts(env: Mapping[str, str]) -> RuntimeFacts:
    """Read the task root, temp dirs, Runtime API and credentials URI from ``env``.

    Environment: LAMBDA_TASK_ROOT, TMPDIR, HOME, AWS_LAMBDA_RUNTIME_API,
    AWS_CONTAINER_CREDENTIALS_FULL_URI, PALISADE_EXTENSION_SOCKET,
    PALISADE_EXTENSION_KEY (only to locate Palisade's own directory). The base also
    reads PALISADE_OPT_DIR, the folder standing for /opt in the local sandbox.
    """
    task_root = os.path.normpath(env.get("LAMBDA_TASK_ROOT") or DEFAULT_TASK_ROOT)
    tmp_dirs = ["/tmp"]
    tmpdir = env.get("TMPDIR")
    if tmpdir and os.path.isabs(tmpdir):
        tmp_dirs.insert(0, os.path.normpath(tmpdir))
    tmp_dirs.append("/dev/shm")
    home = env.get("HOME")
    socket_path = env.get("PALISADE_EXTENSION_SOCKET") or (
        DEFAULT_EXTENSION_DIR + "/extension.sock"
    )
    extension_dirs = {DEFAULT_EXTENSION_DIR}
    for name in ("PALISADE_EXTENSION_SOCKET", "PALISADE_EXTENSION_KEY"):
        value = env.get(name)
        if value and os.path.isabs(value):
            extension_dirs.add(os.path.dirname(os.path.normpath(value)))
    return RuntimeFacts(
        task_root=task_root,
        tmp_dirs=tuple(dict.fromkeys(tmp_dirs)),
        home=os.path.normpath(home) if home and os.path.isabs(home) else None,
        runtime_api=parse_endpoint(env.get("AWS_LAMBDA_RUNTIME_API")),
        credentials=parse_endpoint(
            env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"), url=True
        ),
        extension_dirs=tuple(sorted(extension_dirs)),
        extension_socket=os.path.normpath(socket_path),
    )


def _library_dirs(env: Mapping[str, str]) -> list[str]:
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    # Some virtualenv builds ship a site module without getsitepackages.
    with contextlib.suppress(AttributeError):
        dirs += site.getsitepackages()
    dirs += [p for p in sysconfig.get_paths().values() if p]
    try:
        spec = importlib.util.find_spec("certifi")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        dirs.append(os.path.dirname(spec.origin))
    for name in _CERT_VARIABLES:
        value = env.get(name)
        if value and os.path.isabs(value):
            dirs.append(value)
    # Palisade's own package (schemas) wherever it is installed.
    dirs.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return dirs


class Base:
    """Decides whether an event is something the runtime itself needs."""

    def __init__(self, facts: RuntimeFacts, env: Mapping[str, str]) -> None:
        self.facts = facts
        # PALISADE_OPT_DIR stands for /opt where layers are not unpacked there (the
        # local sandbox); in Lambda it is unset and /opt itself is trusted.
        opt_dir = env.get("PALISADE_OPT_DIR")
        extra = [opt_dir] if opt_dir else []
        roots = [facts.task_root, *_FIXED_READ_DIRS, *extra, *_library_dirs(env)]
        normal = {os.path.normpath(r) for r in roots if r and os.path.isabs(r)}
        # A prefix of "/" would trust the whole file system.
        self.read_dirs = tuple(sorted(r for r in normal if r != "/"))
        self.import_dirs = tuple(
            r for r in self.read_dirs if not r.startswith(("/etc", "/usr/share"))
        )
        self.read_files = frozenset(_FIXED_READ_FILES)

    def allows(
        self, kind: str, op: str, subject: Any, detail: Mapping[str, Any], module: str
    ) -> bool:
        if kind in ("file", "env"):
            return self._file(op, subject)
        if kind == "network":
            return self._network(subject, module)
        if kind == "dns":
            return self._dns(subject, module)
        if kind == "code":
            return self._code(op, subject, detail)
        return False

    def _file(self, op: str, path: str) -> bool:
        if op == "write" and path == "/dev/null":
            return True
        if op not in READ_OPS:
            return False
        if path in self.read_files:
            return True
        if path.startswith(("/proc/self/", "/proc/thread-self/")):
            return not is_environ_path(path)
        if any(under(path, d) for d in self.facts.extension_dirs):
            return True
        return any(under(path, d) for d in self.read_dirs)

    def _network(self, subject: NetworkSubject, module: str) -> bool:
        facts = self.facts
        if subject.unix_path is not None:
            return subject.unix_path == facts.extension_socket
        if facts.credentials is not None and facts.credentials.matches(subject):
            return True
        return (
            module in RUNTIME_MODULES
            and facts.runtime_api is not None
            and facts.runtime_api.matches(subject)
        )

    def _dns(self, name: str, module: str) -> bool:
        facts = self.facts
        if facts.credentials is not None and facts.credentials.names_lookup(name):
            return True
        return (
            module in RUNTIME_MODULES
            and facts.runtime_api is not None
            and facts.runtime_api.names_lookup(name)
        )

    def _code(self, op: str, target: str, detail: Mapping[str, Any]) -> bool:
        if op in ("exec", "compile", "marshal"):
            caller = detail.get("caller")
            return (
                isinstance(caller, str) and caller.partition(".")[0] in STDLIB_MODULES
            )
        if op == "import":
            path = detail.get("file") or detail.get("path")
            if isinstance(path, str) and path.startswith("/"):
                # Checked even for standard-library names: a file that shadows
                # one from elsewhere is not the standard library.
                return any(under(path, d) for d in self.import_dirs)
            # Built-in, frozen, or of unknown location: the read of the module's
            # file (if any) is decided as a file event.
            return True
        if op == "dlopen":
            return target.startswith("/") and any(
                under(target, d) for d in self.import_dirs
            )
        return False
