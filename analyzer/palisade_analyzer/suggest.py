"""Allowlist proposals: a learned profile as a reviewable policy document.

One rule per learned behaviour (its signature is already a glob: volatile parts
are ``*`` within one path segment), scoped with ``packages`` to the packages that
caused it, with its evidence (count, invocations, first/last seen) in the rule's
``comment`` and in the top-level ``evidence`` object. The confidence gate keeps a
signature only if it is live (not decayed), part of the learned baseline (first
seen by the batch that ended learning at the latest), not the subject of an alert,
and seen in at least ``min_invocations`` invocations or, for per-process work,
only at cold starts and at as many of them as there were (up to the same number);
the rest is listed under ``evidence.excluded`` with the reason.

Stages (``--stage``): ``monitor`` (record only), ``alert-new`` (alert on anything
unlisted), ``block-high-risk`` (alert, but block unlisted process, code and env
operations, the high-risk classes), ``full`` (block everything unlisted).

Limitations: the policy language has modes per kind only, and built-in rules follow
their kind's mode, so ``block-high-risk`` blocks the built-in classes of process,
code and env (shell, exec from /tmp, native code, environ reads) but only alerts
on those of network and file (metadata address, writes to code directories).
Behaviour the runtime base already allows is proposed too (harmless,
but noisy); a shell is proposed with any command string (``-c .*``) because its
command is a free value; host patterns become a leading ``*.`` wildcard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .model import SigStats, VersionInfo, utc
from .profile import is_baseline, is_live
from .settings import Settings
from .signatures import RENAME_ARROW, SHELLS
from .store import Store

STAGES = ("monitor", "alert-new", "block-high-risk", "full")
HIGH_RISK_KINDS = ("process", "code", "env")
KIND_ORDER = ("file", "process", "network", "dns", "aws", "code", "env")

# One argv token that is a value, not a flag (may be empty: doubled spaces).
_VALUE = r"(?:[^\s-]\S*|-[\d.]\S*|-)?"


def _iso(ts: float) -> str:
    return utc(ts)


def _flag_regex(flag: str) -> str:
    return r"\S*".join(re.escape(part) for part in flag.split("*"))


def argv_regex(flags: list[str], shell: bool) -> str:
    """A regex matching argument lists (argv[0] excluded) with these flags in order.

    Values may appear anywhere between the flags; no other flag may. For a shell the
    command string after ``-c`` is free.
    """
    gap = f"(?: {_VALUE})*"
    if shell and flags and flags[-1] == "-c":
        head = flags[:-1]
        lead = f"(?:{_VALUE} )*" + "".join(f"{_flag_regex(f)}{gap} " for f in head)
        return lead + r"-c(?: .*)?"
    if not flags:
        return f"{_VALUE}{gap}"
    return f"(?:{_VALUE} )*" + " ".join(_flag_regex(f) + gap for f in flags)


def _host_glob(host: str) -> str | None:
    if "*" not in host:
        return host
    labels = host.split(".")
    last = max(i for i, label in enumerate(labels) if "*" in label)
    suffix = labels[last + 1 :]
    if len(suffix) < 2:
        return None
    return "*." + ".".join(suffix)


def _split_network(rest: str) -> tuple[str, str, str, str]:
    op, protocol = "connect", "tcp"
    head, sep, tail = rest.partition(":")
    if sep and "/" in head:
        op, _, protocol = head.partition("/")
        rest = tail
    host, _, port = rest.rpartition(":")
    return op, protocol, host, port


def rules_for(stats: SigStats) -> list[tuple[str, dict[str, Any]]]:
    """The policy rules (kind, rule) that allow one signature; empty if none can.

    A rename or link signature names two paths; the layer decides both, so it
    yields one rule per path.
    """
    kind, _, rest = stats.signature.partition(":")
    if kind == "file":
        op, _, paths = rest.partition(":")
        found = []
        for path in paths.split(RENAME_ARROW):
            made = rule_for(stats, f"file:{op}:{path}")
            if made is None:
                return []
            found.append(made)
        return found
    made = rule_for(stats)
    return [] if made is None else [made]


def rule_for(
    stats: SigStats, signature: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The policy rule (kind, rule) that allows one signature, or None.

    ``signature`` replaces ``stats.signature`` (one path of a rename signature).
    """
    kind, _, rest = (signature or stats.signature).partition(":")
    rule: dict[str, Any]
    if kind == "file":
        op, _, path = rest.partition(":")
        if not path.startswith(("/", "$TASK_ROOT", "$TMP")):
            return None
        rule = {"path": path, "access": [op]}
    elif kind == "process":
        exe, *flags = rest.split(" ")
        shell = exe.rsplit("/", 1)[-1] in SHELLS
        rule = {"exec": exe, "argv": argv_regex(flags, shell)}
    elif kind == "network":
        op, protocol, host, port = _split_network(rest)
        pattern = _host_glob(host)
        if pattern is None or not port.isdigit():
            return None
        rule = {"host": pattern, "ports": [int(port)], "protocol": protocol}
        rule["ops"] = [op]
    elif kind == "dns":
        pattern = _host_glob(rest)
        if pattern is None:
            return None
        rule = {"name": pattern}
    elif kind == "aws":
        if rest.count(":") < 1:
            return None
        rule = {"call": rest}
    elif kind == "code":
        op, _, target = rest.partition(":")
        rule = {"op": op}
        if target:
            rule["target"] = target
    elif kind == "env":
        _, _, path = rest.partition(":")
        if not path.startswith("/proc/"):
            return None
        rule = {"path": path}
    else:
        return None
    packages = sorted(set(stats.packages))
    if packages:
        rule["packages"] = packages
    rule["comment"] = (
        f"{stats.signature}: seen {stats.count} time(s) in {stats.invocations} "
        f"invocation(s) from {_iso(stats.first_seen)} to {_iso(stats.last_seen)}; "
        f"class {stats.sensitivity}"
    )
    return kind, rule


def _gate(
    stats: SigStats,
    info: VersionInfo,
    alerted: set[str],
    min_invocations: int,
    settings: Settings,
) -> str | None:
    if stats.signature in alerted:
        return "alerted: review the alert before allowing it"
    if not is_live(stats, info, settings):
        return "decayed: not seen recently"
    if info.stable_at is not None and not is_baseline(stats, info, settings):
        return "first seen after learning ended"
    if stats.invocations < min_invocations and not _per_process(
        stats, info, min_invocations
    ):
        return (
            f"seen in {stats.invocations} invocation(s), fewer than {min_invocations}"
        )
    return None


def _per_process(stats: SigStats, info: VersionInfo, min_invocations: int) -> bool:
    """Behaviour of each execution environment's start (INIT or first invocation).

    Seen only in cold starts, and in as many as there were (up to the gate): work a
    process does once (reading config, probing the temp dir) is learned from few
    environments, not from many invocations.
    """
    needed = min(min_invocations, info.sandboxes)
    return needed > 0 and stats.cold == stats.invocations >= needed


def _modes(stage: str) -> tuple[str, dict[str, str]]:
    if stage == "monitor":
        return "monitor", {}
    if stage == "alert-new":
        return "alert", {}
    if stage == "block-high-risk":
        return "alert", dict.fromkeys(HIGH_RISK_KINDS, "block")
    return "block", {}


def suggest_policy(
    store: Store,
    function: str,
    *,
    version: str | None = None,
    stage: str = "full",
    min_invocations: int = 3,
    settings: Settings | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Propose a policy for ``function`` from its profile.

    Raises:
        LookupError: the function (or the version) has no profile.
        ValueError: ``stage`` is not one of ``STAGES``.
    """
    settings = settings or Settings()
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    versions = store.versions(function)
    if not versions:
        raise LookupError(f"function {function!r} has no profile in this store")
    if version is None:
        info = max(versions, key=lambda v: v.last_seen)
    else:
        found = [v for v in versions if v.version == version]
        if not found:
            raise LookupError(
                f"function {function!r} has no version {version!r}; known: "
                f"{', '.join(v.version for v in versions)}"
            )
        info = found[0]
    alerted = {
        a.signature
        for a in store.alerts(function=function)
        if a.version == info.version
    }
    sections: dict[str, list[dict[str, Any]]] = {}
    rules_evidence: dict[str, Any] = {}
    excluded: list[dict[str, str]] = []
    for stats in store.signatures(function, info.version):
        reason = _gate(stats, info, alerted, min_invocations, settings)
        made = [] if reason else rules_for(stats)
        if reason is None and not made:
            reason = "no policy rule can express this signature"
        if reason is not None:
            excluded.append({"signature": stats.signature, "reason": str(reason)})
            continue
        for kind, rule in made:
            rules = sections.setdefault(kind, [])
            rules_evidence[f"{kind}.allow[{len(rules)}]"] = {
                "signature": stats.signature,
                "count": stats.count,
                "invocations": stats.invocations,
                "first_seen": stats.first_seen,
                "last_seen": stats.last_seen,
                "packages": sorted(set(stats.packages)),
                "sensitivity": stats.sensitivity,
            }
            rules.append(rule)
    mode, kind_modes = _modes(stage)
    doc: dict[str, Any] = {
        "version": 1,
        "mode": mode,
        "function": function,
        "description": (
            f"Proposed by the Palisade analyzer from {info.invocations} invocation(s) "
            f"of version {info.version} (profile {info.state}); stage {stage}. "
            "Review before publishing."
        ),
    }
    for kind in KIND_ORDER:
        section: dict[str, Any] = {}
        if kind in kind_modes:
            section["mode"] = kind_modes[kind]
        if sections.get(kind):
            section["allow"] = sections[kind]
        if section:
            doc[kind] = section
    doc["evidence"] = {
        "generated_at": _iso(now if now is not None else info.last_seen),
        "function": function,
        "version": info.version,
        "profile_state": info.state,
        "invocations": info.invocations,
        "stage": stage,
        "min_invocations": min_invocations,
        "rules": rules_evidence,
        "excluded": excluded,
    }
    return doc


def section_rules(doc: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The allow rules of one kind in a policy document."""
    section = doc.get(kind) or {}
    return list(section.get("allow") or [])
