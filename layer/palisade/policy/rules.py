"""Policy rules compiled for matching, and the event subjects they match against.

A validated document's rules become small objects with one ``matches`` method; an
event becomes one *subject* per kind (a path, a parsed address, ...) built once per
decision. ``literal`` tells whether a rule's key pattern names exactly one thing,
which is what an exact allow of a built-in high-risk behaviour needs.

Limitations: a process ``argv`` regex sees the arguments joined with single spaces,
so one argument containing a space looks like two. A process rule without ``ops``
applies to every process op alike (``fork`` has the interpreter as target, ``kill``
the pid as text or ``pgid:<n>``); give ``ops`` to allow, say, only ``kill``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from palisade.policy.matching import (
    IPAddress,
    canonical_ip,
    is_literal_glob,
    is_literal_regex,
    name_matches,
    normal_name,
    parse_ip,
    path_glob_regex,
    split_hostport,
    word_glob_regex,
)


@dataclass(frozen=True)
class ProcessSubject:
    path: str
    name: str
    args: str
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkSubject:
    names: tuple[str, ...]
    ip: str | None
    address: IPAddress | None
    port: int | None
    protocol: str
    unix_path: str | None = None


@dataclass(frozen=True)
class AwsSubject:
    service: str
    operation: str
    resource: str | None


def top_module(module: object) -> str:
    """The top-level package name of an event's ``module`` ('' when unknown)."""
    if not isinstance(module, str):
        return ""
    return module.partition(".")[0]


def process_subject(target: str, detail: Mapping[str, Any]) -> ProcessSubject:
    argv = detail.get("argv")
    if isinstance(argv, (str, bytes)):
        argv = [argv]
    items = [
        a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)
        for a in argv or ()
    ]
    return ProcessSubject(
        target, target.rpartition("/")[2], " ".join(items[1:]), tuple(items[1:])
    )


def network_subject(target: str, detail: Mapping[str, Any]) -> NetworkSubject:
    host, port = split_hostport(target)
    names: list[str] = []
    is_path = host.startswith(("/", "@"))
    address = parse_ip(detail.get("ip"))
    if is_path or not host:
        host_address = None
    elif address is not None and host == detail.get("ip"):
        host_address = address
    else:
        host_address = parse_ip(host)
    address = address or host_address
    if host and host_address is None and not is_path:
        names.append(normal_name(host))
    # Names from the detail are compared as names only; one that is really an
    # IP literal can never equal a rule's name (those compile to addresses).
    for key in ("resolved_from", "host"):
        value = detail.get(key)
        if isinstance(value, str) and value:
            name = normal_name(value)
            if name not in names:
                names.append(name)
    detail_port = detail.get("port")
    if isinstance(detail_port, int) and not isinstance(detail_port, bool):
        port = detail_port
    protocol = detail.get("protocol")
    return NetworkSubject(
        tuple(names),
        None if address is None else str(address),
        address,
        port,
        protocol if isinstance(protocol, str) else "tcp",
        target if is_path else None,
    )


def aws_subject(target: str) -> AwsSubject:
    parts = target.split(":", 2)
    service = parts[0].lower()
    operation = parts[1] if len(parts) > 1 else ""
    resource = parts[2] if len(parts) > 2 and parts[2] else None
    return AwsSubject(service, operation, resource)


def expand_path(
    pattern: str, variables: Mapping[str, str | None]
) -> tuple[str, str] | None:
    """Split ``$VAR/rest`` into (expanded literal prefix, rest); None when the
    variable has no value in this environment (the rule then matches nothing)."""
    if not pattern.startswith("$"):
        return "", pattern
    for name, value in variables.items():
        if pattern == name or pattern.startswith(name + "/"):
            if value is None:
                return None
            return value.rstrip("/"), pattern[len(name) :]
    return None


class Rule:
    """Base of the compiled rules: id, package scope and literalness."""

    literal = False

    def __init__(self, rule_id: str, raw: Mapping[str, Any]) -> None:
        self.rule_id = rule_id
        packages = raw.get("packages")
        self.packages = frozenset(packages) if packages else None

    def in_scope(self, module: str) -> bool:
        return self.packages is None or module in self.packages

    def matches(self, op: str, subject: Any, module: str) -> bool:
        raise NotImplementedError


class PathRule(Rule):
    """file and env rules: a path glob and, for files, a list of accesses."""

    def __init__(
        self,
        rule_id: str,
        raw: Mapping[str, Any],
        variables: Mapping[str, str | None],
    ) -> None:
        super().__init__(rule_id, raw)
        access = raw.get("access")
        self.access = frozenset(access) if access else None
        split = expand_path(raw["path"], variables)
        self.regex: re.Pattern[str] | None = None
        if split is not None:
            prefix, rest = split
            self.regex = path_glob_regex(rest, prefix)
        self.literal = is_literal_glob(raw["path"])

    def matches(self, op: str, subject: Any, module: str) -> bool:
        return (
            self.regex is not None
            and (self.access is None or op in self.access)
            and self.in_scope(module)
            and self.regex.fullmatch(subject) is not None
        )


class ProcessRule(Rule):
    """An executable glob (absolute path, or a bare name against the basename)
    and an optional regex over the arguments after argv[0]."""

    def __init__(
        self,
        rule_id: str,
        raw: Mapping[str, Any],
        variables: Mapping[str, str | None],
    ) -> None:
        super().__init__(rule_id, raw)
        exec_pattern: str = raw["exec"]
        self.by_name = "/" not in exec_pattern and not exec_pattern.startswith("$")
        self.regex: re.Pattern[str] | None
        if self.by_name:
            self.regex = word_glob_regex(exec_pattern)
        else:
            split = expand_path(exec_pattern, variables)
            self.regex = None if split is None else path_glob_regex(split[1], split[0])
        argv = raw.get("argv")
        self.argv = re.compile(argv, re.DOTALL) if argv is not None else None
        ops = raw.get("ops")
        self.ops = frozenset(ops) if ops else None
        self.literal = is_literal_glob(exec_pattern) and (
            argv is None or is_literal_regex(argv)
        )

    def matches(self, op: str, subject: Any, module: str) -> bool:
        if self.regex is None or not self.in_scope(module):
            return False
        if self.ops is not None and op not in self.ops:
            return False
        text = subject.name if self.by_name else subject.path
        if self.regex.fullmatch(text) is None:
            return False
        return self.argv is None or self.argv.fullmatch(subject.args) is not None


class NetworkRule(Rule):
    """Host (name, ``*.`` wildcard or IP), CIDR, ports, protocol, ops: all that
    are given must match."""

    def __init__(self, rule_id: str, raw: Mapping[str, Any]) -> None:
        super().__init__(rule_id, raw)
        host = raw.get("host")
        self.host_ip = canonical_ip(host) if host is not None else None
        self.host_name = (
            normal_name(host) if host is not None and not self.host_ip else None
        )
        cidr = raw.get("cidr")
        self.network = ipaddress.ip_network(cidr, strict=False) if cidr else None
        ports = raw.get("ports")
        self.ports = frozenset(ports) if ports else None
        self.protocol = raw.get("protocol")
        ops = raw.get("ops")
        self.ops = frozenset(ops) if ops else None
        if host is not None:
            self.literal = "*" not in host
        elif self.network is not None:
            self.literal = self.network.num_addresses == 1

    def host_matches(self, subject: NetworkSubject) -> bool:
        if self.host_ip is not None:
            return subject.ip == self.host_ip
        if self.host_name is not None:
            return any(name_matches(self.host_name, n) for n in subject.names)
        return True

    def matches(self, op: str, subject: Any, module: str) -> bool:
        if not self.in_scope(module):
            return False
        if self.ops is not None and op not in self.ops:
            return False
        if self.ports is not None and subject.port not in self.ports:
            return False
        if self.protocol is not None and subject.protocol != self.protocol:
            return False
        if self.network is not None and (
            subject.address is None
            or subject.address.version != self.network.version
            or subject.address not in self.network
        ):
            return False
        return self.host_matches(subject)

    def allows_lookup(self, name: str, module: str) -> bool:
        """A host rule also allows resolving that host (dns events)."""
        if not self.in_scope(module):
            return False
        if self.host_name is not None:
            return name_matches(self.host_name, name)
        return self.host_ip is not None and canonical_ip(name) == self.host_ip


class DnsRule(Rule):
    def __init__(self, rule_id: str, raw: Mapping[str, Any]) -> None:
        super().__init__(rule_id, raw)
        name = raw["name"]
        self.ip = canonical_ip(name)
        self.name = normal_name(name)
        self.literal = "*" not in name

    def matches(self, op: str, subject: Any, module: str) -> bool:
        if not self.in_scope(module):
            return False
        if self.ip is not None:
            return canonical_ip(subject) == self.ip
        return name_matches(self.name, subject)


class AwsRule(Rule):
    """``service:Operation[:resource]`` globs; the service is case-insensitive;
    a rule without a resource matches any resource."""

    def __init__(self, rule_id: str, raw: Mapping[str, Any]) -> None:
        super().__init__(rule_id, raw)
        call: str = raw["call"]
        parts = call.split(":", 2)
        self.service = word_glob_regex(parts[0], ignore_case=True)
        self.operation = word_glob_regex(parts[1])
        self.resource = word_glob_regex(parts[2]) if len(parts) > 2 else None
        self.literal = is_literal_glob(call)

    def matches(self, op: str, subject: Any, module: str) -> bool:
        if not self.in_scope(module):
            return False
        if self.service.fullmatch(subject.service) is None:
            return False
        if self.operation.fullmatch(subject.operation) is None:
            return False
        if self.resource is None:
            return True
        return (
            subject.resource is not None
            and self.resource.fullmatch(subject.resource) is not None
        )


class CodeRule(Rule):
    def __init__(self, rule_id: str, raw: Mapping[str, Any]) -> None:
        super().__init__(rule_id, raw)
        self.op = raw["op"]
        target = raw.get("target")
        self.target = word_glob_regex(target) if target is not None else None
        self.literal = target is not None and is_literal_glob(target)

    def matches(self, op: str, subject: Any, module: str) -> bool:
        return (
            op == self.op
            and self.in_scope(module)
            and (self.target is None or self.target.fullmatch(subject) is not None)
        )


def compile_rules(
    kind: str,
    list_name: str,
    raws: Sequence[Mapping[str, Any]],
    variables: Mapping[str, str | None],
) -> tuple[Rule, ...]:
    """Compile one ``allow`` or ``deny`` list of a validated document."""
    rules: list[Rule] = []
    for i, raw in enumerate(raws):
        rule_id = f"policy:{kind}.{list_name}[{i}]"
        rule: Rule
        if kind in ("file", "env"):
            rule = PathRule(rule_id, raw, variables)
        elif kind == "process":
            rule = ProcessRule(rule_id, raw, variables)
        elif kind == "network":
            rule = NetworkRule(rule_id, raw)
        elif kind == "dns":
            rule = DnsRule(rule_id, raw)
        elif kind == "aws":
            rule = AwsRule(rule_id, raw)
        elif kind == "code":
            rule = CodeRule(rule_id, raw)
        else:
            raise ValueError(f"unknown policy kind {kind!r}")
        rules.append(rule)
    return tuple(rules)
