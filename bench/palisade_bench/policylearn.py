"""A block-mode policy that allows what a function did in a monitor-mode pass.

The benchmark's block variant needs a policy under which the function's benign
traffic runs unchanged. It is learnt the way a user would start one: run the
function in monitor mode on benign events (a different random stream from the
measured one), take every event of the shipped records, and allow it. Targets are
generalised just enough that the next benign event is covered too:

- files under the interpreter's own folders (standard library, site-packages) are
  allowed for reading below that folder (``/prefix/**``); other files per folder
  (``/dir/*``) with the accesses seen there;
- processes by executable; network by host (or /32) and port; DNS by name;
  AWS calls by ``service:Operation`` with any resource; code and env events as
  seen.

Limitation: a benign path that the learning pass never touched in a folder it
never saw is blocked; the benchmark counts such invocations and reports them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_ROOTS = sorted(
    {
        os.path.realpath(p)
        for p in (
            sys.prefix,
            sys.base_prefix,
            sysconfig.get_paths()["stdlib"],
            sysconfig.get_paths()["purelib"],
            sysconfig.get_paths()["platlib"],
        )
    },
    key=len,
    reverse=True,
)


def records_from_batches(path: Path) -> list[dict[str, Any]]:
    """Every record in a file sink's JSON lines (one batch per line)."""
    records: list[dict[str, Any]] = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        if line.strip():
            records.extend(json.loads(line).get("records", []))
    return records


def _root_of(target: str, extra_roots: Iterable[str]) -> str | None:
    for root in [*extra_roots, *_ROOTS]:
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return root
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _split(target: str) -> tuple[str, int | None]:
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return target, None


def _substitute(path: str, variables: dict[str, str]) -> str:
    """``path`` with a sandbox-specific prefix replaced by its policy variable."""
    for prefix, variable in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return variable + path[len(prefix.rstrip("/")) :]
    return path


def build_policy(
    records: list[dict[str, Any]],
    function: str,
    read_roots: Iterable[str] = (),
    variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A block-mode policy allowing every event in ``records`` (generalised).

    Args:
        records: invocation records of the learning pass.
        function: the function name written into the policy.
        read_roots: folders below which any read is allowed once one was seen.
        variables: prefix -> ``$TMP``/``$TASK_ROOT``/``$HOME``, for the paths that
            differ between the learning sandbox and the measured one.
    """
    roots = list(read_roots)
    variables = {
        **{os.path.realpath(k): v for k, v in (variables or {}).items()},
        **(variables or {}),
    }
    file_dirs: dict[str, set[str]] = {}
    root_ops: dict[str, set[str]] = {}
    processes: set[str] = set()
    network: dict[tuple[str, str | None], set[int]] = {}
    names: set[str] = set()
    aws: set[str] = set()
    code: set[tuple[str, str]] = set()
    env: set[str] = set()
    for record in records:
        for event in record.get("events", []):
            kind, op, target = event["kind"], event["op"], str(event["target"])
            if kind == "file":
                root = _root_of(target, roots)
                if root is not None and op in ("read", "list"):
                    root_ops.setdefault(root, set()).add(op)
                else:
                    folder = target if op == "list" else os.path.dirname(target)
                    file_dirs.setdefault(folder.rstrip("/") or "/", set()).add(op)
            elif kind == "process":
                processes.add(target)
            elif kind == "network":
                host, port = _split(target)
                protocol = (event.get("detail") or {}).get("protocol")
                ports = network.setdefault((host, protocol), set())
                if port is not None:
                    ports.add(port)
            elif kind == "dns":
                names.add(target)
            elif kind == "aws":
                service, _, rest = target.partition(":")
                operation = rest.split(":", 1)[0]
                aws.add(f"{service}:{operation}")
            elif kind == "code":
                code.add((op, target))
            elif kind == "env":
                env.add(target)

    root_ops = {_substitute(k, variables): v for k, v in root_ops.items()}
    merged: dict[str, set[str]] = {}
    for folder, ops in file_dirs.items():
        merged.setdefault(_substitute(folder, variables), set()).update(ops)
    # A function reads back what it writes: a folder it creates files in is
    # readable too.
    for ops in merged.values():
        if ops & {"create", "write"}:
            ops.add("read")
    file_dirs = merged
    file_rules = [
        {"path": f"{root.rstrip('/')}/**", "access": sorted(ops)}
        for root, ops in sorted(root_ops.items())
    ]
    file_rules += [
        {
            "path": f"{folder.rstrip('/')}/*" if folder != "/" else "/*",
            "access": sorted(ops),
        }
        for folder, ops in sorted(file_dirs.items())
    ]
    # A folder listed is allowed itself as well as its entries.
    file_rules += [
        {"path": folder, "access": sorted(ops & {"list", "read"})}
        for folder, ops in sorted(file_dirs.items())
        if ops & {"list"}
    ]
    network_rules: list[dict[str, Any]] = []
    for (host, protocol), ports in sorted(network.items(), key=str):
        rule: dict[str, Any] = (
            {"cidr": f"{host}/{128 if ':' in host else 32}"}
            if _is_ip(host)
            else {"host": host}
        )
        if ports:
            rule["ports"] = sorted(ports)
        if protocol in ("tcp", "udp"):
            rule["protocol"] = protocol
        network_rules.append(rule)
    policy: dict[str, Any] = {
        "version": 1,
        "mode": "block",
        "function": function,
        "description": "Learnt by the benchmark from a monitor-mode pass over benign "
        "events.",
        "file": {"allow": file_rules},
        "process": {"allow": [{"exec": p} for p in sorted(processes)]},
        "network": {"allow": network_rules},
        "dns": {"allow": [{"name": n} for n in sorted(names)]},
        "aws": {
            "allow": [{"call": c} for c in sorted(aws)]
            + [{"call": f"{c}:*"} for c in sorted(aws)]
        },
        "code": {
            "allow": [
                {"op": op, "target": t} if t else {"op": op} for op, t in sorted(code)
            ]
        },
        "env": {"allow": [{"path": p} for p in sorted(env)]},
    }
    return policy
