"""Engine decisions: per kind and mode, scoping, precedence, built-ins, caching."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from palisade.errors import ConfigError, PolicyError
from palisade.policy import BUILTIN_IDS, Decision, Engine, canonical_ip, load_engine
from palisade.policy.builtin import is_metadata_ip

ENV = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
    "TMPDIR": "/tmp",
    "HOME": "/home/sbx",
}
OUTSIDE = {"monitor": "allowed", "alert": "alerted", "block": "blocked"}
RAISED = {"monitor": "alerted", "alert": "alerted", "block": "blocked"}
MODES = ("monitor", "alert", "block")

POLICY: dict[str, Any] = {
    "version": 1,
    "file": {
        "allow": [
            {"path": "$TMP/out/*.png", "access": ["write", "create"]},
            {"path": "/data/**", "access": ["read", "list"]},
            {"path": "$HOME/.config/app.ini"},
        ],
        "deny": [{"path": "/data/secret/**"}],
    },
    "process": {
        "allow": [
            {"exec": "convert", "argv": "-resize \\d+x\\d+ \\S+ \\S+"},
            {"exec": "/usr/bin/git", "packages": ["vcs"]},
        ]
    },
    "network": {
        "allow": [
            {"host": "*.example.com", "ports": [443]},
            {"cidr": "10.0.0.0/8", "ports": [5432], "protocol": "tcp"},
            {"host": "203.0.113.7"},
            {"ports": [53], "protocol": "udp", "ops": ["sendto"]},
        ],
        "deny": [{"host": "bad.example.com"}],
    },
    "dns": {"allow": [{"name": "*.internal"}]},
    "aws": {
        "allow": [
            {"call": "dynamodb:PutItem:orders"},
            {"call": "s3:Get*:my-bucket/*"},
            {"call": "sqs:SendMessage"},
        ]
    },
    "code": {
        "allow": [
            {"op": "exec", "packages": ["attrs"]},
            {"op": "pickle", "target": "myapp.models:*"},
        ]
    },
    "env": {"allow": [{"path": "/proc/1/status"}]},
}


def engine(document: dict[str, Any] | None = None, **kwargs: Any) -> Engine:
    env = {**ENV, **kwargs.pop("env", {})}
    return load_engine(document, env=env, **kwargs)


def net(host: str, port: int, ip: str | None = None, **detail: Any) -> dict[str, Any]:
    return {"ip": ip or canonical_ip(host), "port": port, "protocol": "tcp", **detail}


# (kind, op, target, detail, module, rule). A rule starting with policy:*.allow,
# "base" or "aws-endpoint" is allowed in every mode; deny/unlisted follow the mode.
CASES: list[tuple[str, str, str, dict[str, Any], str, str]] = [
    # file
    ("file", "write", "/tmp/out/a.png", {}, "app", "policy:file.allow[0]"),
    ("file", "write", "/tmp/out/sub/a.png", {}, "app", "unlisted"),
    ("file", "read", "/tmp/out/a.png", {}, "app", "unlisted"),
    ("file", "read", "/data/in/deep/x.csv", {}, "app", "policy:file.allow[1]"),
    ("file", "list", "/data", {}, "app", "policy:file.allow[1]"),
    ("file", "write", "/data/x.csv", {}, "app", "unlisted"),
    ("file", "read", "/data/secret/key", {}, "app", "policy:file.deny[0]"),
    ("file", "chmod", "/data/secret/key", {}, "app", "policy:file.deny[0]"),
    ("file", "read", "/home/sbx/.config/app.ini", {}, "app", "policy:file.allow[2]"),
    ("file", "read", "/etc/passwd", {}, "app", "unlisted"),
    ("file", "read", "/etc/resolv.conf", {}, "app", "base"),
    ("file", "read", "/var/task/app.py", {}, "app", "base"),
    ("file", "read", "/opt/python/lib/x.py", {}, "app", "base"),
    ("file", "read", "/usr/share/zoneinfo/UTC", {}, "app", "base"),
    ("file", "read", "/proc/self/status", {}, "app", "base"),
    ("file", "write", "/dev/null", {}, "app", "base"),
    ("file", "read", "/tmp/palisade/extension.key", {}, "palisade", "base"),
    ("file", "write", "/etc/resolv.conf", {}, "app", "unlisted"),
    (
        "file",
        "rename",
        "/tmp/out/a.png",
        {"dst": "/data/a.png"},
        "app",
        "unlisted",
    ),
    # process
    (
        "process",
        "spawn",
        "/usr/bin/convert",
        {"argv": ["convert", "-resize", "10x10", "a.jpg", "b.png"]},
        "app",
        "policy:process.allow[0]",
    ),
    (
        "process",
        "spawn",
        "/opt/bin/convert",
        {"argv": ["convert", "-resize", "10x10", "a.jpg", "b.png"]},
        "app",
        "policy:process.allow[0]",
    ),
    (
        "process",
        "spawn",
        "/usr/bin/convert",
        {"argv": ["convert", "-resize", "10x10", "a.jpg", "b.png", ";", "id"]},
        "app",
        "unlisted",
    ),
    (
        "process",
        "spawn",
        "/usr/bin/git",
        {"argv": ["git", "pull"]},
        "vcs",
        "policy:process.allow[1]",
    ),
    ("process", "spawn", "/usr/bin/git", {"argv": ["git", "pull"]}, "app", "unlisted"),
    # network
    (
        "network",
        "connect",
        "api.example.com:443",
        net("api.example.com", 443, "198.51.100.1"),
        "app",
        "policy:network.allow[0]",
    ),
    (
        "network",
        "connect",
        "api.example.com:80",
        net("api.example.com", 80, "198.51.100.1"),
        "app",
        "unlisted",
    ),
    (
        "network",
        "connect",
        "example.com:443",
        net("example.com", 443, "198.51.100.1"),
        "app",
        "unlisted",
    ),
    (
        "network",
        "connect",
        "198.51.100.1:443",
        net("198.51.100.1", 443, resolved_from="API.Example.COM."),
        "app",
        "policy:network.allow[0]",
    ),
    (
        "network",
        "connect",
        "bad.example.com:443",
        net("bad.example.com", 443, "198.51.100.2"),
        "app",
        "policy:network.deny[0]",
    ),
    (
        "network",
        "connect",
        "10.1.2.3:5432",
        net("10.1.2.3", 5432),
        "app",
        "policy:network.allow[1]",
    ),
    ("network", "connect", "10.1.2.3:5433", net("10.1.2.3", 5433), "app", "unlisted"),
    ("network", "connect", "11.1.2.3:5432", net("11.1.2.3", 5432), "app", "unlisted"),
    (
        "network",
        "connect",
        "203.0.113.7:8080",
        net("203.0.113.7", 8080),
        "app",
        "policy:network.allow[2]",
    ),
    (
        "network",
        "sendto",
        "10.0.0.2:53",
        {"ip": "10.0.0.2", "port": 53, "protocol": "udp"},
        "app",
        "policy:network.allow[3]",
    ),
    (
        "network",
        "connect",
        "10.0.0.2:53",
        {"ip": "10.0.0.2", "port": 53, "protocol": "udp"},
        "app",
        "unlisted",
    ),
    (
        "network",
        "connect",
        "127.0.0.1:9001",
        net("127.0.0.1", 9001),
        "awslambdaric",
        "base",
    ),
    (
        "network",
        "connect",
        "dynamodb.us-east-1.amazonaws.com:443",
        net("x", 443, "52.0.0.1", aws_endpoint="dynamodb.us-east-1.amazonaws.com"),
        "boto3",
        "aws-endpoint",
    ),
    (
        "network",
        "connect",
        "s3.amazonaws.com:443",
        net("x", 443, "52.0.0.2", aws_endpoint="dynamodb.us-east-1.amazonaws.com"),
        "boto3",
        "unlisted",
    ),
    (
        "network",
        "connect",
        "127.0.0.1:5000",
        net("127.0.0.1", 5000, aws_endpoint="http://127.0.0.1:5000"),
        "botocore",
        "aws-endpoint",
    ),
    (
        "network",
        "connect",
        "/tmp/palisade/extension.sock",
        {"family": "AF_UNIX"},
        "palisade",
        "base",
    ),
    (
        "network",
        "connect",
        "api.example.com:443",
        {"host": "api.example.com", "port": 443, "protocol": "tcp"},
        "app",
        "policy:network.allow[0]",
    ),
    (
        "network",
        "connect",
        "@abstract",
        {"family": "unix", "path": "@abstract"},
        "app",
        "unlisted",
    ),
    (
        "network",
        "connect",
        "[2001:db8::1]:443",
        {"ip": "2001:db8::1", "port": 443, "resolved_from": "v6.example.com"},
        "app",
        "policy:network.allow[0]",
    ),
    # dns
    ("dns", "resolve", "db.internal", {}, "app", "policy:dns.allow[0]"),
    ("dns", "resolve", "internal", {}, "app", "unlisted"),
    ("dns", "resolve", "api.example.com", {}, "app", "policy:network.allow[0]"),
    ("dns", "resolve", "bad.example.com", {}, "app", "policy:network.allow[0]"),
    ("dns", "resolve", "evil.test", {}, "app", "unlisted"),
    (
        "dns",
        "resolve",
        "sts.amazonaws.com",
        {"aws_endpoint": "sts.amazonaws.com"},
        "boto3",
        "aws-endpoint",
    ),
    # aws
    ("aws", "call", "dynamodb:PutItem:orders", {}, "app", "policy:aws.allow[0]"),
    ("aws", "call", "DynamoDB:PutItem:orders", {}, "app", "policy:aws.allow[0]"),
    ("aws", "call", "dynamodb:PutItem:users", {}, "app", "unlisted"),
    ("aws", "call", "dynamodb:putitem:orders", {}, "app", "unlisted"),
    ("aws", "call", "s3:GetObject:my-bucket/a/b.txt", {}, "app", "policy:aws.allow[1]"),
    ("aws", "call", "s3:PutObject:my-bucket/a", {}, "app", "unlisted"),
    ("aws", "call", "sqs:SendMessage:https://q/1", {}, "app", "policy:aws.allow[2]"),
    ("aws", "call", "sqs:SendMessage", {}, "app", "policy:aws.allow[2]"),
    ("aws", "call", "s3:GetObject", {}, "app", "unlisted"),
    # code
    ("code", "exec", "<string>", {"caller": "attr"}, "attrs", "policy:code.allow[0]"),
    ("code", "exec", "<string>", {"caller": "mylib"}, "mylib", "unlisted"),
    ("code", "exec", "<dataclass>", {"caller": "dataclasses"}, "app", "base"),
    (
        "code",
        "compile",
        "/var/task/app.py",
        {"caller": "importlib._bootstrap_external"},
        "app",
        "base",
    ),
    ("code", "marshal", "", {"caller": "_frozen_importlib_external"}, "app", "base"),
    ("code", "marshal", "", {"caller": "app"}, "app", "unlisted"),
    ("code", "import", "json", {}, "app", "base"),
    ("code", "import", "json", {"file": "/tmp/json.py"}, "app", "unlisted"),
    (
        "code",
        "import",
        "requests",
        {"path": "/var/task/requests/__init__.py"},
        "app",
        "base",
    ),
    ("code", "import", "evil", {"path": "/tmp/evil.py"}, "app", "unlisted"),
    ("code", "import", "evil2", {"file": "/tmp/evil2.so"}, "app", "unlisted"),
    ("code", "import", "yaml", {"file": "/opt/python/yaml/__init__.py"}, "a", "base"),
    ("code", "pickle", "myapp.models:Order", {}, "app", "policy:code.allow[1]"),
    ("code", "pickle", "os:system", {}, "app", "unlisted"),
    ("code", "dlopen", "/opt/python/lib/libfoo.so", {}, "app", "base"),
    # env
    ("env", "read", "/proc/1/status", {}, "app", "policy:env.allow[0]"),
    ("env", "read", "/proc/1/cmdline", {}, "app", "unlisted"),
]


def _expected(rule: str, mode: str) -> str:
    if (rule.startswith("policy:") and ".allow[" in rule) or rule in (
        "base",
        "aws-endpoint",
    ):
        return "allowed"
    return OUTSIDE[mode]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "op", "target", "detail", "module", "rule"), CASES)
def test_decision_table(
    mode: str,
    kind: str,
    op: str,
    target: str,
    detail: dict[str, Any],
    module: str,
    rule: str,
) -> None:
    """Each event gets the listed rule, and the verdict its mode implies."""
    decision = engine(POLICY, mode=mode).decide(kind, op, target, detail, module)
    assert decision == Decision(_expected(rule, mode), rule)


def test_no_policy_allows_nothing_beyond_base_in_block_mode() -> None:
    """Without a policy, block mode blocks every event outside the base."""
    e = engine(mode="block")
    assert e.policy_id is None and e.document is None
    assert e.decide("file", "read", "/etc/hosts", {}, "app") == ("allowed", "base")
    assert e.decide("aws", "call", "s3:ListBuckets", {}, "app") == (
        "blocked",
        "unlisted",
    )
    assert e.decide("dns", "resolve", "example.com", {}, "app") == (
        "blocked",
        "unlisted",
    )


def test_mode_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """explicit mode > PALISADE_MODE > policy mode > monitor; sections override."""
    doc = {"version": 1, "mode": "alert", "dns": {"mode": "block"}}
    assert engine().mode == "monitor"
    assert engine(doc).mode == "alert"
    assert engine(env={"PALISADE_MODE": "block"}).mode == "block"
    assert engine(doc, env={"PALISADE_MODE": "block"}).mode == "block"
    e = engine(doc, mode="monitor", env={"PALISADE_MODE": "block"})
    assert e.mode == "monitor"
    assert e.mode_for("dns") == "block" and e.mode_for("file") == "monitor"
    assert e.decide("dns", "resolve", "x.test", {}, "app").verdict == "blocked"
    assert e.decide("aws", "call", "s3:ListBuckets", {}, "app").verdict == "allowed"


def test_bad_modes_are_config_errors() -> None:
    """A bad mode argument or PALISADE_MODE names what was expected."""
    with pytest.raises(ConfigError, match="expected one of monitor, alert, block"):
        engine(mode="enforce")
    with pytest.raises(ConfigError, match="PALISADE_MODE has the value 'strict'"):
        engine(env={"PALISADE_MODE": "strict"})
    with pytest.raises(ConfigError, match="PALISADE_ON_ERROR"):
        engine(env={"PALISADE_ON_ERROR": "ignore"})


# builtin id -> (events before, the event, literal allow, non-literal allow)
BUILTIN_CASES: dict[
    str,
    tuple[
        list[tuple[Any, ...]],
        tuple[Any, ...],
        tuple[str, dict[str, Any]],
        tuple[str, dict[str, Any]],
    ],
] = {
    "shell-spawn": (
        [],
        (
            "process",
            "spawn",
            "/bin/sh",
            {"argv": ["/bin/sh", "-c", "ls /tmp"], "shell": True},
            "app",
        ),
        ("process", {"exec": "/bin/sh", "argv": "-c ls /tmp"}),
        ("process", {"exec": "/bin/sh", "argv": "-c .*"}),
    ),
    "proc-environ-read": (
        [],
        ("file", "read", "/proc/self/environ", {}, "app"),
        ("file", {"path": "/proc/self/environ", "access": ["read"]}),
        ("file", {"path": "/proc/self/*"}),
    ),
    "metadata-address": (
        [],
        ("network", "connect", "169.254.169.254:80", net("169.254.169.254", 80), "app"),
        ("network", {"host": "169.254.169.254", "ports": [80]}),
        ("network", {"cidr": "169.254.0.0/16"}),
    ),
    "runtime-api-access": (
        [],
        ("network", "connect", "127.0.0.1:9001", net("127.0.0.1", 9001), "requests"),
        ("network", {"cidr": "127.0.0.1/32", "ports": [9001]}),
        ("network", {"cidr": "127.0.0.0/8"}),
    ),
    "code-dir-write": (
        [],
        ("file", "write", "/var/task/app.py", {}, "app"),
        ("file", {"path": "$TASK_ROOT/app.py", "access": ["write"]}),
        ("file", {"path": "$TASK_ROOT/**"}),
    ),
    "tmp-exec": (
        [("file", "create", "/tmp/tool", {}, "app")],
        ("process", "spawn", "/tmp/tool", {"argv": ["/tmp/tool"]}, "app"),
        ("process", {"exec": "/tmp/tool"}),
        ("process", {"exec": "/tmp/*"}),
    ),
    "ctypes-libc": (
        [],
        ("code", "dlopen", "libc.so.6", {}, "app"),
        ("code", {"op": "dlopen", "target": "libc.so.6"}),
        ("code", {"op": "dlopen", "target": "libc*"}),
    ),
}


def test_every_builtin_has_a_case() -> None:
    """The table below covers every built-in id."""
    assert sorted(BUILTIN_CASES) == sorted(BUILTIN_IDS)


def _run(e: Engine, before: list[tuple[Any, ...]], event: tuple[Any, ...]) -> Decision:
    for prior in before:
        e.decide(*prior)
    return e.decide(*event)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("builtin_id", BUILTIN_IDS)
def test_builtin_raises_verdict_in_every_mode(builtin_id: str, mode: str) -> None:
    """A built-in rule alerts in monitor and alert mode and blocks in block mode,
    also when a non-literal allow rule matches the event."""
    before, event, _, (kind, loose) = BUILTIN_CASES[builtin_id]
    expected = Decision(RAISED[mode], f"builtin:{builtin_id}")
    assert _run(engine(mode=mode), before, event) == expected
    loose_doc = {"version": 1, kind: {"allow": [loose]}}
    assert _run(engine(loose_doc, mode=mode), before, event) == expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("builtin_id", BUILTIN_IDS)
def test_builtin_exact_allow_overrides(builtin_id: str, mode: str) -> None:
    """A literal allow rule for exactly that behaviour allows it, unless a deny
    rule matches too."""
    before, event, (kind, exact), _ = BUILTIN_CASES[builtin_id]
    doc = {"version": 1, kind: {"allow": [exact]}}
    assert _run(engine(doc, mode=mode), before, event) == (
        "allowed",
        f"policy:{kind}.allow[0]",
    )
    denied = {"version": 1, kind: {"allow": [exact], "deny": [exact]}}
    assert _run(engine(denied, mode=mode), before, event) == (
        RAISED[mode],
        f"builtin:{builtin_id}",
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("builtin_id", BUILTIN_IDS)
def test_builtin_disable(builtin_id: str, mode: str) -> None:
    """A disabled built-in no longer fires; the event follows the mode."""
    before, event, _, _ = BUILTIN_CASES[builtin_id]
    doc = {"version": 1, "builtin": {"disable": [builtin_id]}}
    assert _run(engine(doc, mode=mode), before, event) == (OUTSIDE[mode], "unlisted")


def test_packages_scope_exact_allow() -> None:
    """An exact allow scoped to a package overrides a built-in for it alone."""
    doc = {
        "version": 1,
        "file": {
            "allow": [
                {
                    "path": "$TASK_ROOT/cache.db",
                    "access": ["write"],
                    "packages": ["store"],
                }
            ]
        },
    }
    e = engine(doc, mode="block")
    assert e.decide("file", "write", "/var/task/cache.db", {}, "store") == (
        "allowed",
        "policy:file.allow[0]",
    )
    assert e.decide("file", "write", "/var/task/cache.db", {}, "store.sub").verdict == (
        "allowed"
    )
    assert e.decide("file", "write", "/var/task/cache.db", {}, "other") == (
        "blocked",
        "builtin:code-dir-write",
    )


@pytest.mark.parametrize(
    "event",
    [
        ("process", "system", "/bin/sh", {"argv": ["/bin/sh", "-c", "id"]}, "app"),
        ("process", "spawn", "/usr/bin/bash", {"argv": ["bash"]}, "app"),
        (
            "process",
            "exec",
            "/bin/busybox",
            {"argv": ["busybox", "sh", "-c", "id"]},
            "app",
        ),
        ("process", "spawn", "/usr/bin/env", {"argv": ["env"], "shell": True}, "app"),
        ("env", "read", "/proc/1/environ", {}, "app"),
        ("env", "read", "/proc/thread-self/environ", {}, "app"),
        ("file", "read", "/proc/42/task/43/environ", {}, "app"),
        ("code", "dlopen", "None", {}, "app"),
        ("code", "dlopen", "<process>", {}, "app"),
        ("code", "dlopen", "", {}, "app"),
        ("code", "dlopen", "/lib/x86_64-linux-gnu/libc.so.6", {}, "app"),
        ("code", "dlopen", "/lib/ld-musl-x86_64.so.1", {}, "app"),
        ("code", "dlsym", "system", {"library": "None"}, "app"),
        ("code", "dlsym", "mprotect", {"library": "libc.so.6"}, "app"),
        ("file", "delete", "/var/task", {}, "app"),
        ("file", "rename", "/tmp/a", {"dst": "/var/task/a"}, "app"),
        ("dns", "resolve", "169.254.169.254", {}, "app"),
    ],
)
def test_builtin_variants(event: tuple[Any, ...]) -> None:
    """Other spellings of each high-risk behaviour trigger a built-in too."""
    assert engine(mode="block").decide(*event).rule.startswith("builtin:")


@pytest.mark.parametrize(
    "event",
    [
        ("process", "spawn", "/usr/bin/shred", {"argv": ["shred"]}, "app"),
        ("process", "spawn", "/bin/busybox", {"argv": ["busybox", "ls"]}, "app"),
        ("file", "read", "/proc/self/environment", {}, "app"),
        ("code", "dlopen", "libcrypto.so.3", {}, "app"),
        ("code", "dlsym", "strlen", {}, "app"),
        ("file", "write", "/var/taskforce/x", {}, "app"),
        ("network", "connect", "127.0.0.1:9002", net("127.0.0.1", 9002), "requests"),
        ("network", "connect", "169.255.0.1:80", net("169.255.0.1", 80), "app"),
    ],
)
def test_builtin_near_misses(event: tuple[Any, ...]) -> None:
    """Look-alikes that are not the high-risk behaviour do not trigger one."""
    assert engine(mode="block").decide(*event).rule in ("unlisted", "base")


METADATA_SPELLINGS = [
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "[::ffff:169.254.169.254]",
    "2852039166",
    "0xa9fea9fe",
    "0xA9.0xFE.0xA9.0xFE",
    "0251.0376.0251.0376",
    "169.254.43518",
    "169.16689662",
    "169.254.169.254.",
]


@pytest.mark.parametrize("spelling", METADATA_SPELLINGS)
def test_canonical_ip_of_metadata_spellings(spelling: str) -> None:
    """Every spelling of the metadata address canonicalises to the dotted quad."""
    assert canonical_ip(spelling) == "169.254.169.254"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FD00:EC2:0::254", "fd00:ec2::254"),
        ("[fd00:ec2::254]", "fd00:ec2::254"),
        ("fe80::1%eth0", "fe80::1"),
        ("127.1", "127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_ip(text: Any, expected: str | None) -> None:
    """canonical_ip normalises addresses and rejects names and malformed forms."""
    assert canonical_ip(text) == expected


@pytest.mark.parametrize(
    "ip",
    [
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.170.2",
        "169.254.1.1",
        "64:ff9b::a9fe:a9fe",
        "::a9fe:a9fe",
    ],
)
def test_metadata_connect_blocked_for_each_address(ip: str) -> None:
    """Connects to every metadata and link-local address hit the built-in."""
    e = engine(mode="block")
    target = f"[{ip}]:80" if ":" in ip else f"{ip}:80"
    assert is_metadata_ip(ip)
    assert e.decide("network", "connect", target, {"ip": ip, "port": 80}, "app") == (
        "blocked",
        "builtin:metadata-address",
    )


def test_hook_canonical_target_without_detail() -> None:
    """A connect whose detail lacks the ip is judged from the target's address."""
    e = engine(mode="block")
    decision = e.decide("network", "connect", "[::ffff:169.254.169.254]:80", {}, "app")
    assert decision == ("blocked", "builtin:metadata-address")


def test_container_credentials_uri_is_exempt_exactly() -> None:
    """The host:port of AWS_CONTAINER_CREDENTIALS_FULL_URI is allowed, no other."""
    e = engine(
        mode="block",
        env={"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/v2/creds"},
    )
    ok = e.decide(
        "network", "connect", "169.254.170.2:80", net("169.254.170.2", 80), "botocore"
    )
    assert ok == ("allowed", "base")
    other = e.decide(
        "network", "connect", "169.254.170.2:81", net("169.254.170.2", 81), "botocore"
    )
    assert other == ("blocked", "builtin:metadata-address")
    imds = e.decide(
        "network",
        "connect",
        "169.254.169.254:80",
        net("169.254.169.254", 80),
        "botocore",
    )
    assert imds == ("blocked", "builtin:metadata-address")


def test_runtime_api_for_runtime_modules_only() -> None:
    """The Runtime API is base for the runtime's modules, a built-in for others."""
    e = engine(mode="block")
    event = ("network", "connect", "127.0.0.1:9001", net("127.0.0.1", 9001))
    for module in ("awslambdaric", "bootstrap", "<runtime>"):
        assert e.decide(*event, module) == ("allowed", "base")
    assert e.decide(*event, "app") == ("blocked", "builtin:runtime-api-access")
    assert e.decide(*event, None) == ("blocked", "builtin:runtime-api-access")


def test_runtime_api_named_localhost() -> None:
    """AWS_LAMBDA_RUNTIME_API=localhost:PORT is recognised by name and by IP."""
    e = engine(mode="block", env={"AWS_LAMBDA_RUNTIME_API": "localhost:9001"})
    by_ip = ("network", "connect", "127.0.0.1:9001", net("127.0.0.1", 9001), "app")
    by_name = ("network", "connect", "localhost:9001", {"host": "localhost"}, "app")
    for event in (by_ip, by_name):
        assert e.decide(*event) == ("blocked", "builtin:runtime-api-access")


def test_tmp_exec_tracks_state_past_the_cache() -> None:
    """An exec is rejudged once its file was written, and again once deleted."""
    e = engine(mode="alert")
    spawn = ("process", "spawn", "/tmp/x", {"argv": ["/tmp/x"]}, "app")
    assert e.decide(*spawn) == ("alerted", "unlisted")
    e.decide("file", "write", "/tmp/x", {}, "app")
    assert e.decide(*spawn) == ("alerted", "builtin:tmp-exec")
    e.decide("file", "delete", "/tmp/x", {}, "app")
    assert e.decide(*spawn) == ("alerted", "unlisted")


def test_tmp_exec_chmod_rename_and_dlopen() -> None:
    """chmod +x, a rename into /tmp, and dlopen of a written file count too;
    chmod without an execute bit does not."""
    e = engine(mode="block")
    e.decide("file", "chmod", "/tmp/a", {"mode": 0o755}, "app")
    assert e.decide("process", "exec", "/tmp/a", {}, "app").rule == "builtin:tmp-exec"
    e.decide("file", "chmod", "/tmp/b", {"mode": 0o644}, "app")
    assert e.decide("process", "exec", "/tmp/b", {}, "app").rule == "unlisted"
    e.decide("file", "rename", "/data/c", {"dst": "/tmp/c"}, "app")
    assert e.decide("process", "spawn", "/tmp/c", {}, "app").rule == "builtin:tmp-exec"
    e.decide("file", "write", "/dev/shm/lib.so", {}, "app")
    assert e.decide("code", "dlopen", "/dev/shm/lib.so", {}, "app").rule == (
        "builtin:tmp-exec"
    )
    e.decide("file", "write", "/data/d", {}, "app")
    assert e.decide("process", "spawn", "/data/d", {}, "app").rule == "unlisted"


@pytest.mark.parametrize(
    "runner",
    ["/usr/bin/python3.12", "/bin/bash", "/usr/bin/env", "/lib64/ld-linux-x86-64.so.2"],
)
def test_tmp_exec_through_an_interpreter(runner: str) -> None:
    """A written file run by an interpreter or loader counts as tmp-exec, also
    after the same command was decided (and cached) before the write."""
    e = engine(mode="block")
    name = runner.rpartition("/")[2]
    spawn = ("process", "spawn", runner, {"argv": [name, "/tmp/payload"]}, "app")
    assert e.decide(*spawn).rule != "builtin:tmp-exec"
    e.decide("file", "write", "/tmp/payload", {}, "app")
    assert e.decide(*spawn) == ("blocked", "builtin:tmp-exec")
    other = (
        "process",
        "spawn",
        "/usr/bin/cp",
        {"argv": ["cp", "/tmp/payload", "/tmp/b"]},
    )
    assert e.decide(*other, "app").rule == "unlisted"


def test_tmpdir_counts_as_tmp() -> None:
    """$TMPDIR, when set elsewhere, is tracked like /tmp and expands $TMP."""
    doc = {"version": 1, "file": {"allow": [{"path": "$TMP/*.txt"}]}}
    e = engine(doc, mode="block", env={"TMPDIR": "/scratch"})
    assert e.decide("file", "write", "/scratch/a.txt", {}, "app") == (
        "allowed",
        "policy:file.allow[0]",
    )
    e.decide("file", "write", "/scratch/tool", {}, "app")
    assert (
        e.decide("process", "spawn", "/scratch/tool", {}, "app").rule
        == "builtin:tmp-exec"
    )


def test_home_rule_matches_nothing_without_home() -> None:
    """A $HOME rule is inert when HOME is not set."""
    doc = {"version": 1, "file": {"allow": [{"path": "$HOME/**"}]}}
    e = load_engine(doc, mode="block", env={"LAMBDA_TASK_ROOT": "/var/task"})
    assert e.decide("file", "read", "/home/x/a", {}, "app") == ("blocked", "unlisted")


def test_cache_keys_include_the_details_that_decide() -> None:
    """The same target with a different decisive detail is decided afresh."""
    e = engine(mode="block")
    ok = e.decide("code", "import", "plugin", {"file": "/opt/python/plugin.py"}, "a")
    assert ok == ("allowed", "base")
    bad = e.decide("code", "import", "plugin", {"file": "/tmp/plugin.py"}, "a")
    assert bad == ("blocked", "unlisted")
    doc = {"version": 1, "network": {"allow": [{"host": "api.example.com"}]}}
    e = engine(doc, mode="block")
    named = {"ip": "198.51.100.9", "port": 443, "resolved_from": "api.example.com"}
    target = "198.51.100.9:443"
    assert e.decide("network", "connect", target, named, "a").verdict == "allowed"
    assert (
        e.decide(
            "network", "connect", target, {**named, "resolved_from": "x.test"}, "a"
        ).verdict
        == "blocked"
    )


def test_process_exec_with_path_variable() -> None:
    """An exec pattern may start with $TASK_ROOT or $TMP like a file path."""
    doc = {"version": 1, "process": {"allow": [{"exec": "$TASK_ROOT/bin/*"}]}}
    e = engine(doc, mode="block")
    assert (
        e.decide("process", "spawn", "/var/task/bin/tool", {}, "app").verdict
        == "allowed"
    )
    assert e.decide("process", "spawn", "/opt/bin/tool", {}, "app").verdict == "blocked"


def test_concurrent_decisions() -> None:
    """Threads deciding and writing at once get consistent verdicts."""
    e = engine(POLICY, mode="block")
    e.CACHE_LIMIT = 64
    failures: list[Any] = []

    def work(n: int) -> None:
        for i in range(300):
            path = f"/tmp/w{n}-{i}"
            e.decide("file", "write", path, {}, "app")
            got = e.decide("process", "spawn", path, {}, "app")
            if got != ("blocked", "builtin:tmp-exec"):
                failures.append(got)
            if e.decide("file", "read", f"/data/{i}", {}, "app").verdict != "allowed":
                failures.append(i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and e.errors == 0
    e.decide("file", "read", "/data/last", {}, "app")  # trims any racing overfill
    assert len(e._cache) <= 64


def test_cache_is_used_and_bounded() -> None:
    """Repeated events come from the cache, which never exceeds its limit."""
    e = engine(POLICY, mode="block")
    e.CACHE_LIMIT = 50
    for i in range(200):
        e.decide("file", "read", f"/data/{i}", {}, "app")
    assert len(e._cache) <= 50
    first = e.decide("aws", "call", "sqs:SendMessage", {}, "app")
    assert e.decide("aws", "call", "sqs:SendMessage", {}, "app") is first


def test_decide_fails_open_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Bad event input yields allowed/error, counted, logged once."""
    e = engine(POLICY, mode="block")
    with caplog.at_level(logging.ERROR, logger="palisade.policy.engine"):
        assert e.decide("process", "spawn", "/bin/x", {"argv": 5}, "app") == (
            "allowed",
            "error",
        )
        assert e.decide("nonsense", "x", "y", {}, "app") == ("allowed", "error")
    assert e.errors == 2
    assert len(caplog.records) == 1


def test_odd_inputs_do_not_raise() -> None:
    """None, bytes and non-dict details are tolerated."""
    e = engine(POLICY, mode="block")
    assert e.decide("file", "read", b"/data/x", None, None) == (
        "allowed",
        "policy:file.allow[1]",
    )
    assert e.decide("file", "read", None, "junk", 3).verdict == "blocked"
    assert e.decide("network", "connect", "weird", {"ip": object()}, "app").verdict in (
        "blocked",
        "allowed",
    )


def test_on_error_open_closed_raise(caplog: pytest.LogCaptureFixture) -> None:
    """An invalid policy: open → built-ins only in monitor mode; closed raises,
    whether it comes from PALISADE_ON_ERROR or the argument."""
    bad = {"version": 1, "mode": "block", "file": {"allow": [{"path": "rel"}]}}
    with caplog.at_level(logging.ERROR, logger="palisade.policy.engine"):
        e = engine(bad)
    assert e.mode == "monitor" and e.policy_id is None
    assert isinstance(e.load_error, PolicyError)
    assert "$.file.allow[0].path" in caplog.text
    assert (
        e.decide("file", "read", "/proc/self/environ", {}, "app").verdict == "alerted"
    )
    with pytest.raises(PolicyError, match=r"\$\.file\.allow\[0\]\.path"):
        engine(bad, env={"PALISADE_ON_ERROR": "closed"})
    with pytest.raises(PolicyError, match=r"\$\.file\.allow\[0\]\.path"):
        engine(bad, on_error="closed")


def test_policy_from_environment(tmp_path: Path) -> None:
    """PALISADE_POLICY names a file, holds inline JSON, or says 'extension'."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY), encoding="utf-8")
    from_file = engine(env={"PALISADE_POLICY": str(path)})
    assert from_file.document == POLICY and from_file.source == str(path)
    inline = engine(env={"PALISADE_POLICY": json.dumps(POLICY)})
    assert inline.policy_id == from_file.policy_id and inline.source == "inline"
    ext = engine(env={"PALISADE_POLICY": "extension"})
    assert ext.source == "extension" and ext.policy_id is None
    assert engine().source == "none"


def test_decide_performs_no_io() -> None:
    """GIVEN a loaded engine WHEN it decides many events THEN no audit event for
    file, socket or process I/O is raised (run in a child: hooks are permanent)."""
    script = f"""
import sys
from palisade.policy import load_engine
e = load_engine({POLICY!r}, mode="block", env={ENV!r})
seen = []
watch = ("open", "os.", "socket.", "subprocess.", "shutil.", "glob.")
sys.addaudithook(lambda ev, args: ev.startswith(watch) and seen.append(ev))
for i in range(3):
    e.decide("file", "read", f"/data/{{i}}", {{}}, "app")
    e.decide("file", "write", "/tmp/t", {{}}, "app")
    e.decide("process", "spawn", "/tmp/t", {{"argv": ["/tmp/t"]}}, "app")
    e.decide("network", "connect", "a.example.com:443", {{"ip": "1.1.1.1"}}, "app")
    e.decide("dns", "resolve", "db.internal", {{}}, "app")
    e.decide("aws", "call", "s3:GetObject:my-bucket/x", {{}}, "app")
    e.decide("code", "dlopen", "libc.so.6", {{}}, "app")
print(len(seen), seen[:5])
"""
    layer = str(Path(__file__).resolve().parents[2] / "layer")
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": layer, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    assert result.stdout.split()[0] == "0", result.stdout


def test_process_rule_ops_limit_the_rule_to_those_operations() -> None:
    """GIVEN a block policy allowing only kill for any executable
    WHEN the function kills a child and then spawns a program
    THEN the kill is allowed by that rule and the spawn stays unlisted (blocked)."""
    engine = load_engine(
        {
            "version": 1,
            "mode": "block",
            "process": {"allow": [{"exec": "*", "ops": ["kill"], "packages": ["app"]}]},
        }
    )
    kill = engine.decide("process", "kill", "4242", {"pid": 4242}, "app")
    spawn = engine.decide(
        "process", "spawn", "/usr/bin/true", {"argv": ["true"]}, "app"
    )
    assert kill == ("allowed", "policy:process.allow[0]")
    assert spawn == ("blocked", "unlisted")


def test_sandbox_opt_dir_is_trusted_like_opt() -> None:
    """GIVEN PALISADE_OPT_DIR naming the folder that stands for /opt
    WHEN a block-mode engine decides a read there and a read beside it
    THEN the first is base and the second stays unlisted."""
    env = {"PALISADE_OPT_DIR": "/work/sbx/opt", "LAMBDA_TASK_ROOT": "/work/sbx/code"}
    engine = load_engine({"version": 1, "mode": "block"}, env=env)
    inside = engine.decide("file", "read", "/work/sbx/opt/python/x.py", {}, "app")
    beside = engine.decide("file", "read", "/work/sbx/other/x.py", {}, "app")
    assert inside == ("allowed", "base")
    assert beside == ("blocked", "unlisted")
