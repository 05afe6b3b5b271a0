"""The policy engine: one verdict per observed operation.

Order of evaluation for an event (per path, for a rename or link both paths):

1. built-in high-risk rules (``builtin:<id>``), unless the policy allows the exact
   behaviour with a literal allow rule (and no deny rule matches) or disables them;
2. the built-in base (``base``);
3. the policy's deny rules (``policy:<kind>.deny[i]``);
4. the endpoint of the botocore call in progress (``aws-endpoint``, network/dns);
5. the policy's allow rules (``policy:<kind>.allow[i]``; for dns also network
   allow rules that name the host);
6. nothing matched (``unlisted``).

Outside the policy (3 and 6) the verdict follows the kind's mode: ``allowed`` in
monitor, ``alerted`` in alert, ``blocked`` in block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from palisade.config import MODES, POLICY_FROM_EXTENSION, read_setting
from palisade.errors import ConfigError, PolicyError
from palisade.policy.base import Base, runtime_facts
from palisade.policy.builtin import Builtins, TmpTracker
from palisade.policy.loader import PolicySource, load_policy_document, policy_id
from palisade.policy.matching import canonical_ip, normal_name, split_hostport
from palisade.policy.rules import (
    NetworkRule,
    NetworkSubject,
    Rule,
    aws_subject,
    compile_rules,
    network_subject,
    process_subject,
    top_module,
)

logger = logging.getLogger(__name__)

KINDS = ("file", "process", "network", "dns", "aws", "code", "env")
VERDICTS = ("allowed", "alerted", "blocked")
_SEVERITY = {"allowed": 0, "alerted": 1, "blocked": 2}
_OUTSIDE = {"monitor": "allowed", "alert": "alerted", "block": "blocked"}


class Decision(NamedTuple):
    """A verdict (``allowed|alerted|blocked``) and the rule that decided it."""

    verdict: str
    rule: str


BASE = Decision("allowed", "base")
AWS_ENDPOINT = Decision("allowed", "aws-endpoint")
ERROR = Decision("allowed", "error")


class _Section:
    __slots__ = ("allow", "deny", "kind", "mode", "unlisted")

    def __init__(
        self, kind: str, mode: str, allow: tuple[Rule, ...], deny: tuple[Rule, ...]
    ) -> None:
        self.kind = kind
        self.mode = mode
        self.allow = allow
        self.deny = deny
        self.unlisted = Decision(_OUTSIDE[mode], "unlisted")

    def outside(self, rule: str) -> Decision:
        return Decision(_OUTSIDE[self.mode], rule)

    def raised(self, builtin_id: str) -> Decision:
        verdict = "blocked" if self.mode == "block" else "alerted"
        return Decision(verdict, f"builtin:{builtin_id}")


def _check_mode(mode: str, what: str) -> str:
    if mode not in MODES:
        raise ConfigError(
            f"{what}={mode!r} is not valid; expected one of {', '.join(MODES)}"
        )
    return mode


class Engine:
    """Decides events against the built-in rules, the base and one policy.

    Build it with :func:`load_engine`; the constructor takes a document that has
    already been validated (``load_policy_document``).

    Limitations: the decision cache holds at most ``CACHE_LIMIT`` entries and
    forgets the oldest first; ``decide`` trusts the hook to have normalised the
    target (absolute path, canonical IP), as the event contract says.
    """

    CACHE_LIMIT = 8192

    def __init__(
        self,
        document: Mapping[str, Any] | None = None,
        *,
        mode: str = "monitor",
        env: Mapping[str, str] | None = None,
        source: str = "none",
        load_error: PolicyError | None = None,
    ) -> None:
        env = dict(os.environ if env is None else env)
        self.mode = _check_mode(mode, "mode")
        self.document: dict[str, Any] | None = dict(document) if document else None
        self.policy_id = policy_id(self.document) if self.document is not None else None
        self.source = source
        self.load_error = load_error
        self.errors = 0
        self._error_logged = False
        self._cache: dict[tuple[Any, ...], Decision] = {}

        facts = runtime_facts(env)
        self.facts = facts
        self.base = Base(facts, env)
        self.tracker = TmpTracker(facts.tmp_dirs)
        builtin = (self.document or {}).get("builtin") or {}
        self.builtins = Builtins(
            facts, frozenset(builtin.get("disable") or ()), self.tracker
        )
        variables = facts.path_variables
        self._sections: dict[str, _Section] = {}
        for kind in KINDS:
            raw = (self.document or {}).get(kind) or {}
            self._sections[kind] = _Section(
                kind,
                raw.get("mode") or self.mode,
                compile_rules(kind, "allow", raw.get("allow") or (), variables),
                compile_rules(kind, "deny", raw.get("deny") or (), variables),
            )
        self._network_allow = tuple(
            r for r in self._sections["network"].allow if isinstance(r, NetworkRule)
        )

    def mode_for(self, kind: str) -> str:
        """The mode of one kind: its section's ``mode``, else the engine's."""
        section = self._sections.get(kind)
        return section.mode if section is not None else self.mode

    def clear_cache(self) -> None:
        """Forget cached decisions (the tmp-exec state is kept)."""
        self._cache.clear()

    def decide(
        self,
        kind: str,
        op: str,
        target: Any,
        detail: Mapping[str, Any] | None = None,
        module: str | None = None,
    ) -> Decision:
        """The verdict for one operation; never raises.

        Args:
            kind, op: as in the event contract (``file``/``read``, ...).
            target: normalised target (path, ``host:port``, name, ``svc:Op``...).
            detail: the event's detail; keys read are listed in docs/policy.md.
            module: top-level package that made the call.

        Returns:
            A Decision; on an internal error ``Decision("allowed", "error")``,
            logged once per engine and counted in ``errors``.
        """
        try:
            return self._decide(kind, op, target, detail, module)
        except Exception:
            self.errors += 1
            if not self._error_logged:
                self._error_logged = True
                logger.exception(
                    "policy engine failed on %s %s %r; allowing it (logged once)",
                    kind,
                    op,
                    target,
                )
            return ERROR

    def _decide(
        self, kind: str, op: str, target: Any, detail: Any, module: Any
    ) -> Decision:
        if kind not in self._sections:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
        if not isinstance(detail, Mapping):
            detail = {}
        if isinstance(target, bytes):
            target = target.decode("utf-8", "surrogateescape")
        target = "" if target is None else str(target)
        op = str(op)
        top = top_module(module)
        if kind == "file":
            self.tracker.observe(op, target, detail)

        key = self._cache_key(kind, op, target, detail, top)
        if key is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        decision = self._evaluate(kind, op, target, detail, top)
        if key is not None:
            self._store(key, decision)
        return decision

    def _store(self, key: tuple[Any, ...], decision: Decision) -> None:
        cache = self._cache
        # A loop, not an if: threads racing past the check can overfill it.
        while len(cache) >= self.CACHE_LIMIT:
            try:
                del cache[next(iter(cache))]
            except (StopIteration, KeyError, RuntimeError):
                cache.clear()
        cache[key] = decision

    def _cache_key(
        self, kind: str, op: str, target: str, detail: Mapping[str, Any], module: str
    ) -> tuple[Any, ...] | None:
        get = detail.get
        key: tuple[Any, ...]
        if kind == "file":
            key = (kind, op, target, get("dst"), module)
        elif kind == "process":
            if target in self.tracker:
                return None
            argv = get("argv")
            args = tuple(argv) if isinstance(argv, (list, tuple)) else argv
            # An argument naming a written temp file makes the decision
            # stateful (an interpreter running it is tmp-exec): never cached.
            if (
                len(self.tracker)
                and isinstance(args, tuple)
                and any(isinstance(a, str) and a in self.tracker for a in args)
            ):
                return None
            key = (kind, op, target, args, get("shell") is True, module)
        elif kind == "network":
            key = (
                kind,
                op,
                target,
                get("ip"),
                get("port"),
                get("protocol"),
                get("resolved_from"),
                get("host"),
                get("aws_endpoint"),
                module,
            )
        elif kind == "dns":
            key = (kind, op, target, get("aws_endpoint"), module)
        elif kind == "code":
            if op == "dlopen" and target in self.tracker:
                return None
            key = (kind, op, target, get("caller"), get("file"), get("path"), module)
        else:
            key = (kind, op, target, module)
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def _evaluate(
        self, kind: str, op: str, target: str, detail: Mapping[str, Any], module: str
    ) -> Decision:
        decision = self._evaluate_one(kind, op, target, detail, module)
        dst = detail.get("dst")
        if kind == "file" and op in ("rename", "link") and isinstance(dst, str) and dst:
            other = self._evaluate_one(kind, op, dst, detail, module)
            if _rank(other) > _rank(decision):
                return other
        return decision

    def _subject(self, kind: str, target: str, detail: Mapping[str, Any]) -> Any:
        if kind == "process":
            return process_subject(target, detail)
        if kind == "network":
            return network_subject(target, detail)
        if kind == "dns":
            return normal_name(target)
        if kind == "aws":
            return aws_subject(target)
        return target

    def _evaluate_one(
        self, kind: str, op: str, target: str, detail: Mapping[str, Any], module: str
    ) -> Decision:
        subject = self._subject(kind, target, detail)
        section = self._sections[kind]

        builtin_id = self.builtins.check(kind, op, subject, detail, module)
        if builtin_id is not None:
            if _first(section.deny, op, subject, module) is None:
                exact = self._exact_allow(section, op, subject, module)
                if exact is not None:
                    return Decision("allowed", exact)
            return section.raised(builtin_id)

        if self.base.allows(kind, op, subject, detail, module):
            return BASE

        deny = _first(section.deny, op, subject, module)
        if deny is not None:
            return section.outside(deny.rule_id)

        if kind in ("network", "dns") and _is_aws_endpoint(subject, detail):
            return AWS_ENDPOINT

        allow = _first(section.allow, op, subject, module)
        if allow is not None:
            return Decision("allowed", allow.rule_id)
        if kind == "dns":
            for rule in self._network_allow:
                if rule.allows_lookup(subject, module):
                    return Decision("allowed", rule.rule_id)
        return section.unlisted

    def _exact_allow(
        self, section: _Section, op: str, subject: Any, module: str
    ) -> str | None:
        for rule in section.allow:
            if rule.literal and rule.matches(op, subject, module):
                return rule.rule_id
        if section.kind == "dns":
            for net in self._network_allow:
                if net.literal and net.allows_lookup(subject, module):
                    return net.rule_id
        return None


def _rank(decision: Decision) -> tuple[int, bool]:
    """Severity, then built-in rules before others (the more telling reason)."""
    return _SEVERITY[decision.verdict], decision.rule.startswith("builtin:")


def _first(rules: tuple[Rule, ...], op: str, subject: Any, module: str) -> Rule | None:
    for rule in rules:
        if rule.matches(op, subject, module):
            return rule
    return None


def _is_aws_endpoint(subject: Any, detail: Mapping[str, Any]) -> bool:
    endpoint = detail.get("aws_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        return False
    if "://" in endpoint:
        try:
            parts = urlsplit(endpoint)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            return False
    else:
        host, port = split_hostport(endpoint)
    ip = canonical_ip(host)
    name = normal_name(host)
    if isinstance(subject, NetworkSubject):
        if port is not None and subject.port != port:
            return False
        return (ip is not None and subject.ip == ip) or name in subject.names
    return isinstance(subject, str) and (subject == name or canonical_ip(subject) == ip)


def load_engine(
    source: PolicySource | None = None,
    *,
    mode: str | None = None,
    on_error: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Engine:
    """Build the engine from a policy source, or from ``PALISADE_POLICY``.

    Args:
        source: a path, inline JSON or YAML text, a dict, or None to read
            ``PALISADE_POLICY`` (``extension`` there means the caller fetches the
            policy from the extension and calls this again with the dict).
        mode: the mode, winning over the policy's top-level ``mode``; None reads
            PALISADE_MODE (unset: the policy's mode, monitor without one).
            A section's own ``mode`` still applies to its kind.
        on_error: ``open`` or ``closed`` for an unloadable policy; None reads
            PALISADE_ON_ERROR (unset: open).
        env: the environment to read (default ``os.environ``).

    Raises:
        ConfigError: a bad ``mode`` or ``on_error`` argument, PALISADE_MODE or
            PALISADE_ON_ERROR.
        PolicyError: the policy cannot be loaded and ``on_error`` is ``closed``.

    Environment: PALISADE_POLICY, PALISADE_MODE, PALISADE_ON_ERROR (declared once,
    in :mod:`palisade.config`), and what
    :func:`palisade.policy.base.runtime_facts` reads.
    """
    env = dict(os.environ if env is None else env)
    if mode is None:
        mode = read_setting("mode", env)
    else:
        _check_mode(mode, "mode")
    default_mode = "monitor"
    if on_error is None:
        on_error = read_setting("on_error", env)
    if on_error not in ("open", "closed"):
        raise ConfigError(
            f"on_error={on_error!r} is not valid; expected 'open' or 'closed'"
        )
    if source is None:
        source = read_setting("policy", env)
        if source == POLICY_FROM_EXTENSION:
            return Engine(
                None, mode=mode or default_mode, env=env, source=POLICY_FROM_EXTENSION
            )
    if source is None:
        return Engine(None, mode=mode or default_mode, env=env, source="none")

    label = _label(source)
    try:
        document = load_policy_document(source)
    except PolicyError as exc:
        if on_error == "closed":
            raise
        logger.error(
            "palisade policy from %s not loaded: %s; running with the built-in "
            "rules only, in monitor mode (PALISADE_ON_ERROR=open)",
            label,
            exc,
        )
        return Engine(None, mode="monitor", env=env, source=label, load_error=exc)
    resolved = mode or document.get("mode") or default_mode
    return Engine(document, mode=resolved, env=env, source=label)


def _label(source: PolicySource) -> str:
    if isinstance(source, Mapping):
        return "dict"
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes):
        return "inline"
    text = source.strip()
    if "\n" in text or text.startswith(("{", "[")):
        return "inline"
    if os.path.exists(text) or text.startswith(("/", "./", "../", "~")):
        return text
    return text if text.endswith((".json", ".yaml", ".yml")) else "inline"
