"""Behaviour signatures: what an event did, without its volatile details.

An event becomes one signature string, ``<kind>:...``:

- ``file:read:/tmp/*.png``: the op and the path, with volatile parts patterned;
- ``process:/usr/bin/convert -resize``: the executable and its flags (the shape of
  the argument list), never free values;
- ``network:api.example.com:443``: the name the address was resolved from
  (``detail.resolved_from``), else the IP; other ops and UDP as
  ``network:sendto/udp:host:port``;
- ``dns:api.example.com``;
- ``aws:dynamodb:PutItem:orders``: service, operation, resource; S3 keys keep the
  bucket and the first key segment (``aws:s3:GetObject:bucket/uploads/*``);
- ``code:exec:<string>``, ``env:read:/proc/self/environ``.

Volatile parts become ``*`` (one path segment at most, so the same text is a valid
policy glob): UUIDs (request ids), ``tempfile`` names, hex runs of 8+ characters
mixing letters and digits, long random tokens, under ``/tmp``, ``/proc`` and
other scratch roots and in S3 keys, numbers, and under ``/tmp``, ``/var/tmp`` and
``/dev/shm`` any whole name of 8 ``[a-z0-9_]`` characters (tempfile's random part,
which may be all letters).

Limitations: a literal ``*`` or ``[`` in a real path is kept as is and reads as a
glob character in a suggested policy; names that are volatile without looking
random (``/tmp/alice.png``, ``/tmp/bob.png``) stay distinct signatures, which only
low-sensitivity classes should produce; a real 8-letter name in a temp root
(``/tmp/settings``) is generalised to ``*`` like a tempfile name.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Sensitivity classes and their weight in [0, 1]; see docs/analyzer.md.
SENSITIVITY: dict[str, float] = {
    "shell": 1.0,
    "credentials": 1.0,
    "metadata": 1.0,
    "runtime-api": 1.0,
    "code-dir-write": 1.0,
    "tmp-exec": 1.0,
    "audit-hook": 1.0,
    "code-load": 0.9,
    "egress": 0.8,
    "listen": 0.8,
    "process": 0.7,
    "native-code": 0.7,
    "deserialize": 0.7,
    "aws-sensitive": 0.7,
    "file-write": 0.5,
    "aws": 0.4,
    "file-read": 0.3,
    "dns": 0.3,
    "unreported-process": 1.0,
    "unreported-network": 1.0,
    "unreported-library": 0.5,
    "code-read": 0.1,
    "tmp-file": 0.1,
    "import": 0.1,
    "other": 0.3,
}

SHELLS = frozenset(
    ("sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "ash", "busybox")
)
# ``$TMP`` and ``$TASK_ROOT`` stand for the record's own scratch and code roots
# (record ``paths``), so one signature holds in every execution environment.
SCRATCH_ROOTS = ("$TMP", "/tmp", "/var/tmp", "/dev/shm", "/proc", "/run")
TEMP_ROOTS = ("$TMP", "/tmp", "/var/tmp", "/dev/shm")
CODE_DIRS = ("$TASK_ROOT", "/var/task", "/opt", "/var/runtime", "/var/lang")


def rooted(path: str, roots: tuple[tuple[str, str], ...]) -> str:
    """``path`` with a leading root from ``roots`` ((prefix, variable), longest
    prefix first) written as its variable: ``/var/task/a.py`` → ``$TASK_ROOT/a.py``."""
    for prefix, variable in roots:
        if path.startswith(prefix) and (
            len(path) == len(prefix) or path[len(prefix)] == "/"
        ):
            return variable + path[len(prefix) :]
    return path


def record_roots(record: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (prefix, variable) pairs a record's ``paths`` names, longest first."""
    paths = record.get("paths")
    if not isinstance(paths, Mapping):
        return ()
    found = []
    for key, variable in (("task_root", "$TASK_ROOT"), ("tmp", "$TMP")):
        value = paths.get(key)
        if isinstance(value, str) and value.startswith("/") and value != "/":
            found.append((value.rstrip("/"), variable))
    return tuple(sorted(found, key=lambda pair: -len(pair[0])))


CREDENTIAL_GLOBS = (
    "/proc/*/environ",
    "*/.aws/credentials",
    "*/.aws/config",
    "*/.ssh/*",
    "/etc/shadow",
    "/etc/passwd",
    "/var/run/secrets/*",
)
METADATA_HOSTS = frozenset(("169.254.169.254", "169.254.170.2", "fd00:ec2::254"))
SENSITIVE_AWS = frozenset(
    ("iam", "sts", "secretsmanager", "kms", "ssm", "organizations", "lambda")
)

_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_TEMPFILE = re.compile(r"^tmp[a-z0-9_]{8}(?=$|\.)")
# tempfile's random part alone (a prefix-less name), in temp roots only.
_RANDOM8 = re.compile(r"^[a-z0-9_]{8}(?=$|\.)")
_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{8,}(?![0-9A-Za-z])")
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{16,}")
_NUMBER = re.compile(r"\d+")
_STARS = re.compile(r"\*+")
_DIGIT = re.compile(r"\d")


#: separates the source and destination patterns of a rename or link signature
RENAME_ARROW = " -> "


@dataclass(frozen=True)
class Behaviour:
    """What one event did: its signature and how sensitive that is."""

    signature: str
    kind: str
    sensitivity: str

    @property
    def weight(self) -> float:
        """The sensitivity class's weight."""
        return SENSITIVITY.get(self.sensitivity, SENSITIVITY["other"])


def _hex_sub(match: re.Match[str]) -> str:
    text = match.group(0)
    has_letter = any(c.isalpha() for c in text)
    return "*" if has_letter and _DIGIT.search(text) else text


def _token_sub(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    letters = sum(c.isalpha() for c in text)
    return "*" if digits >= 2 and letters >= 2 else text


@functools.lru_cache(maxsize=65536)
def pattern_part(part: str, numbers: bool, temp: bool = False) -> str:
    """One path segment (or host label) with volatile pieces as ``*``.

    ``numbers``: numbers are volatile too (scratch roots, S3 keys). ``temp``: a
    whole 8-character ``[a-z0-9_]`` name is tempfile's random part (temp roots).
    """
    if not part or part in (".", ".."):
        return part
    if temp:
        match = _RANDOM8.match(part)
        if match:
            part = "*" + part[match.end() :]
    if numbers and part.isdigit():
        return "*"
    if not _DIGIT.search(part) and not part.startswith("tmp"):
        # Every other volatile form has a digit (or is a tmp-prefixed temp name).
        return part
    text = _UUID.sub("*", part)
    text = _TEMPFILE.sub("*", text)
    text = _HEX.sub(_hex_sub, text)
    text = _TOKEN.sub(_token_sub, text)
    if numbers:
        text = _NUMBER.sub("*", text)
    return _STARS.sub("*", text)


@functools.cache
def _prefixes(roots: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(root + "/" for root in roots)


def _in_roots(path: str, roots: tuple[str, ...]) -> bool:
    return path.startswith(_prefixes(roots)) or path in roots


@functools.lru_cache(maxsize=65536)
def pattern_path(path: str) -> str:
    """An absolute path with each segment's volatile pieces patterned."""
    numbers = _in_roots(path, SCRATCH_ROOTS)
    temp = _in_roots(path, TEMP_ROOTS)
    parts = path.split("/")
    if path.startswith("/proc/") and len(parts) > 2 and parts[2] == "self":
        numbers = False
    return "/".join(pattern_part(p, numbers, temp) for p in parts)


def is_flag(token: str) -> bool:
    """Whether an argv token is a flag (``-x``, ``--name``), not a value."""
    if len(token) < 2 or not token.startswith("-"):
        return False
    return not (token[1].isdigit() or token[1] == ".")


def flag_shape(token: str) -> str:
    """A flag without its attached value: ``--size=3`` -> ``--size=*``."""
    if token.startswith("--") and "=" in token:
        return token.split("=", 1)[0] + "=*"
    if not token.startswith("--") and len(token) > 2 and not token[1:].isalpha():
        return token[:2] + "*"
    return token


def argv_flags(argv: list[str], shell: bool) -> list[str]:
    """The flags of an argument list (argv[0] excluded), in order.

    The list is split the way a policy's ``argv`` regex sees it: joined with single
    spaces, then split on spaces. For a shell, everything after ``-c`` is the
    command string, a value.
    """
    tokens = " ".join(str(a) for a in argv[1:]).split(" ")
    flags = []
    for token in tokens:
        if is_flag(token):
            flags.append(flag_shape(token))
            if shell and token == "-c":
                break
    return flags


def _split_host_port(target: str) -> tuple[str, str]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, rest.lstrip(":")
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, port
    if ":" in target:
        head, _, tail = target.rpartition(":")
        if tail.isdigit():
            return head, tail
    return target, ""


def _pattern_host(host: str) -> str:
    if not host or _is_ip(host):
        return host
    return ".".join(pattern_part(label, False) for label in host.lower().split("."))


def _is_ip(host: str) -> bool:
    if ":" in host:
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def _s3_resource(resource: str) -> str:
    bucket, _, key = resource.partition("/")
    if not key:
        return bucket
    segments = key.split("/")
    if len(segments) == 1:
        stem, dot, ext = segments[0].rpartition(".")
        keep_ext = dot and stem and ext.isalnum() and len(ext) <= 5
        return f"{bucket}/*.{ext}" if keep_ext else f"{bucket}/*"
    return f"{bucket}/{pattern_part(segments[0], True)}/*"


def _aws_parts(target: str, detail: Mapping[str, Any]) -> tuple[str, str, str]:
    pieces = target.split(":", 2)
    service = str(detail.get("service") or pieces[0]).lower()
    operation = str(detail.get("operation") or (pieces[1] if len(pieces) > 1 else ""))
    resource = detail.get("resource")
    if resource is None:
        resource = pieces[2] if len(pieces) > 2 else ""
    return service, operation, str(resource)


def host_of(kind: str, target: str, detail: Mapping[str, Any]) -> str:
    """The host an event reached: resolved name when known, else the address."""
    if kind == "dns":
        return target.lower().rstrip(".")
    host, _ = _split_host_port(target)
    named = detail.get("resolved_from")
    return str(named).lower().rstrip(".") if named else host


def behaviour_of(
    kind: str, op: str, target: str, detail: Mapping[str, Any]
) -> Behaviour:
    """The signature and sensitivity of one event (see the module docstring)."""
    if kind == "file":
        path = pattern_path(target)
        sensitivity = _file_sensitivity(op, target)
        dst = detail.get("dst")
        if op in ("rename", "link") and isinstance(dst, str) and dst[:1] in "/$":
            # The layer decides both paths of a rename or link, so the signature
            # (and the rule proposed from it) must name both.
            path = f"{path}{RENAME_ARROW}{pattern_path(dst)}"
            to = Behaviour("", kind, _file_sensitivity(op, dst))
            if to.weight > Behaviour("", kind, sensitivity).weight:
                sensitivity = to.sensitivity
        return Behaviour(f"file:{op}:{path}", kind, sensitivity)
    if kind == "process":
        exe = pattern_path(target) if target.startswith(("/", "$")) else target
        base = target.rsplit("/", 1)[-1]
        shell = bool(detail.get("shell")) or base in SHELLS
        argv = detail.get("argv")
        flags = argv_flags(argv, shell) if isinstance(argv, list) else []
        sig = " ".join(["process:" + exe, *flags])
        if shell:
            sensitivity = "shell"
        elif _in_roots(target, TEMP_ROOTS):
            sensitivity = "tmp-exec"
        else:
            sensitivity = "process"
        return Behaviour(sig, kind, sensitivity)
    if kind == "network":
        host, port = _split_host_port(target)
        port = str(detail.get("port") or port)
        named = detail.get("resolved_from")
        host = _pattern_host(str(named).lower().rstrip(".")) if named else host
        protocol = str(detail.get("protocol") or "tcp")
        prefix = "" if op == "connect" and protocol == "tcp" else f"{op}/{protocol}:"
        ip = str(detail.get("ip") or host)
        if ip in METADATA_HOSTS or ip.startswith("169.254.") or host in METADATA_HOSTS:
            sensitivity = "metadata"
        elif op in ("bind", "listen"):
            sensitivity = "listen"
        elif ip.startswith("127.") and port == "9001":
            sensitivity = "runtime-api"
        else:
            sensitivity = "egress"
        return Behaviour(f"network:{prefix}{host}:{port}", kind, sensitivity)
    if kind == "dns":
        return Behaviour(
            f"dns:{_pattern_host(target.lower().rstrip('.'))}", kind, "dns"
        )
    if kind == "aws":
        service, operation, resource = _aws_parts(target, detail)
        if service == "s3":
            resource = _s3_resource(resource)
        elif resource:
            resource = "/".join(pattern_part(p, False) for p in resource.split("/"))
        sig = f"aws:{service}:{operation}" + (f":{resource}" if resource else "")
        sensitivity = "aws-sensitive" if service in SENSITIVE_AWS else "aws"
        return Behaviour(sig, kind, sensitivity)
    if kind == "code":
        if target.startswith(("/", "$")):
            shown = pattern_path(target)
        else:
            shown = pattern_part(target, False)
        sensitivity = {
            "exec": "code-load",
            "compile": "code-load",
            "dlopen": "native-code",
            "dlsym": "native-code",
            "pickle": "deserialize",
            "marshal": "deserialize",
            "import": "import",
            "addaudithook": "audit-hook",
        }.get(op, "other")
        return Behaviour(f"code:{op}:{shown}", kind, sensitivity)
    if kind == "env":
        return Behaviour(f"env:{op}:{pattern_path(target)}", kind, "credentials")
    return Behaviour(f"{kind}:{op}:{target}", kind, "other")


_CREDENTIALS = re.compile("|".join(fnmatch.translate(g) for g in CREDENTIAL_GLOBS))


def outside_behaviour(kind: str, target: str) -> Behaviour:
    """What the extension saw in /proc that the layer did not report.

    ``outside:process:/usr/bin/nc``, ``outside:network:203.0.113.9:4444``,
    ``outside:library:/tmp/*.so``: the mark of native code or tampering.
    """
    shown = pattern_path(target) if target.startswith("/") else target
    return Behaviour(f"outside:{kind}:{shown}", "outside", f"unreported-{kind}")


def _file_sensitivity(op: str, path: str) -> str:
    if _CREDENTIALS.match(path):
        return "credentials"
    scratch = _in_roots(path, ("/tmp", "/var/tmp", "/dev/shm"))
    code = _in_roots(path, CODE_DIRS) or "/site-packages/" in path
    if op in ("read", "list"):
        if scratch:
            return "tmp-file"
        return "code-read" if code or path.startswith("/usr/") else "file-read"
    if code:
        return "code-dir-write"
    return "tmp-file" if scratch else "file-write"


def injected_strings(
    kind: str, target: str, detail: Mapping[str, Any], digest: list[str]
) -> list[str]:
    """Strings from the invocation's own event found in this event's arguments.

    Event data reaching a command line, a host or code is the mark of injection.
    """
    if not digest:
        return []
    haystack = target
    argv = detail.get("argv")
    if isinstance(argv, list):
        haystack += " " + " ".join(str(a) for a in argv)
    if kind == "network" and detail.get("resolved_from"):
        haystack += " " + str(detail["resolved_from"])
    if kind == "code" and isinstance(detail.get("source"), str):
        # The start of the source handed to compile/eval.
        haystack += " " + detail["source"]
    return [s for s in digest if len(s) >= 4 and s in haystack]
