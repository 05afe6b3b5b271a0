"""Palisade's exceptions, in one place.

    PalisadeError                 base of everything Palisade raises on its own behalf
    ├── ConfigError               a PALISADE_* setting or argument has a bad value
    ├── PolicyError               a policy document is unreadable or invalid
    └── TransportError            the extension socket refused or failed a frame
    BlockedError(PermissionError) a block verdict: the operation was not performed

Only ``BlockedError`` ever reaches the protected function's code, and only for a
``blocked`` verdict; it subclasses ``PermissionError`` so code that already handles
permission failures keeps working.
"""

from __future__ import annotations


class PalisadeError(Exception):
    """Base class of Palisade's own errors."""


class ConfigError(PalisadeError, ValueError):
    """A setting has a value outside what it accepts.

    The message names the setting, the value found and the values expected.
    """


class PolicyError(PalisadeError, ValueError):
    """A policy document cannot be loaded or does not match the schema.

    Attributes:
        issues: one ``(json_path, message)`` pair per problem found, in document order.
    """

    def __init__(self, message: str, issues: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.issues = issues or []


class TransportError(PalisadeError, OSError):
    """The extension's socket could not take a frame."""


class BlockedError(PermissionError):
    """Raised in place of an operation that the policy blocks.

    Attributes:
        kind, op, target: the event that was refused.
        rule: the rule that decided (``builtin:shell-spawn``, ``unlisted``, ...).
    """

    def __init__(self, kind: str, op: str, target: str, rule: str):
        super().__init__(
            f"palisade blocked {kind} {op} {target!r} (rule {rule}); "
            "allow it in the function's policy if it is expected"
        )
        self.kind = kind
        self.op = op
        self.target = target
        self.rule = rule
