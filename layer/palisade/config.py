"""Every PALISADE_* setting the layer reads, declared once.

Each entry of ``SETTINGS`` names the variable, its default, the parser that turns
the text into a value and one line of documentation. ``load_settings`` applies
them: an explicit argument wins over the environment, the environment wins over
the default, and a bad value raises :class:`~palisade.errors.ConfigError` naming
the variable, the value found and the values expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

MODES = ("monitor", "alert", "block")
#: PALISADE_POLICY value meaning "ask the extension for the policy at install"
POLICY_FROM_EXTENSION = "extension"
DEFAULT_SOCKET = "/tmp/palisade/extension.sock"
DEFAULT_KEY = "/tmp/palisade/extension.key"


@dataclass(frozen=True)
class Setting:
    """One PALISADE_* variable: where it comes from and how it is read."""

    field: str
    env: str
    default: Any
    parse: Callable[[str], Any]
    expected: str
    doc: str


def _choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in values:
            raise ValueError(value)
        return value

    return parse


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError(value)


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError(value)
    return value


def _output(text: str) -> str:
    value = text.strip()
    if value == "stdout":
        return value
    if value.startswith("file:") and len(value) > len("file:"):
        return value
    raise ValueError(value)


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text


def _optional_text(text: str) -> str | None:
    return text if text.strip() else None


def _log_level(text: str) -> str | None:
    value = text.strip().upper()
    if not value:
        return None
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(value)
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "mode",
        "PALISADE_MODE",
        None,
        _choice(*MODES),
        "monitor, alert or block",
        "Mode for every kind, overriding the policy's top-level mode (a "
        "section's own mode still applies); unset: the policy's mode, monitor "
        "without one.",
    ),
    Setting(
        "policy",
        "PALISADE_POLICY",
        None,
        _optional_text,
        "a file path, inline JSON or YAML text, or 'extension'",
        "The policy: a path, the document itself, or 'extension' to ask the "
        "extension over its socket at install; unset: built-in rules only.",
    ),
    Setting(
        "on_error",
        "PALISADE_ON_ERROR",
        "open",
        _choice("open", "closed"),
        "open or closed",
        "What an unusable policy does: open runs in monitor mode with the "
        "built-in rules and reports the problem; closed refuses to start "
        "(the runtime reports an init error).",
    ),
    Setting(
        "output",
        "PALISADE_OUTPUT",
        "stdout",
        _output,
        "'stdout' or 'file:PATH'",
        "Where records go when the extension cannot take them, and where "
        "blocked verdicts are written at once, as JSON lines.",
    ),
    Setting(
        "handler",
        "PALISADE_HANDLER",
        None,
        _optional_text,
        "module.function, as in a Lambda handler setting",
        "The function's real handler, used by palisade.handler.handler (the "
        "exec wrapper sets it from _HANDLER).",
    ),
    Setting(
        "log_level",
        "PALISADE_LOG_LEVEL",
        None,
        _log_level,
        "DEBUG, INFO, WARNING, ERROR or CRITICAL",
        "Level of the palisade logger, written to stderr; unset: silent.",
    ),
    Setting(
        "extension_socket",
        "PALISADE_EXTENSION_SOCKET",
        DEFAULT_SOCKET,
        _text,
        "a Unix socket path",
        "The extension's Unix stream socket for records and policy requests.",
    ),
    Setting(
        "extension_key",
        "PALISADE_EXTENSION_KEY",
        DEFAULT_KEY,
        _text,
        "a file path",
        "File holding the hex HMAC key; read once at install, then deleted.",
    ),
    Setting(
        "transport_timeout_ms",
        "PALISADE_TRANSPORT_TIMEOUT_MS",
        500,
        _positive_int,
        "a positive integer (milliseconds)",
        "Bound on each exchange with the extension before falling back to "
        "PALISADE_OUTPUT.",
    ),
    Setting(
        "max_events",
        "PALISADE_MAX_EVENTS",
        2000,
        _positive_int,
        "a positive integer",
        "Events kept per invocation record; further events are counted in 'dropped'.",
    ),
    Setting(
        "attribution",
        "PALISADE_ATTRIBUTION",
        True,
        _switch,
        "on or off",
        "Name the package behind each event (frame walk, cached); off: every "
        "event's module is '<unknown>'.",
    ),
    Setting(
        "function_name",
        "PALISADE_FUNCTION_NAME",
        None,
        _optional_text,
        "a function name",
        "Function name in records; unset: AWS_LAMBDA_FUNCTION_NAME, else 'local'.",
    ),
)

_BY_FIELD = {setting.field: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The layer's configuration, resolved once at install."""

    mode: str | None
    policy: str | dict[str, Any] | None
    on_error: str
    output: str
    handler: str | None
    log_level: str | None
    extension_socket: str
    extension_key: str
    transport_timeout_ms: int
    max_events: int
    attribution: bool
    function_name: str
    function_version: str


def _parse(setting: Setting, raw: str, origin: str) -> Any:
    try:
        return setting.parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{origin} has the value {raw!r}; expected {setting.expected}. "
            f"Set {setting.env} to one of those or leave it unset "
            f"(default {setting.default!r})."
        ) from exc


def read_setting(field: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting from ``environ`` (default ``os.environ``), or its default.

    Raises:
        ConfigError: the value is outside what the setting accepts.
    """
    setting = _BY_FIELD[field]
    env = os.environ if environ is None else environ
    raw = env.get(setting.env)
    if raw is None or not raw.strip():
        return setting.default
    return _parse(setting, raw, setting.env)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: explicit argument, then environment, then default.

    Args:
        overrides: field name → value (``mode="block"``); None values are ignored.
            Strings go through the same parser as the environment.
        environ: the environment to read (``os.environ`` by default).

    Raises:
        ConfigError: a value is outside what its setting accepts, or an override
            names no setting.
    """
    env = os.environ if environ is None else environ
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(_BY_FIELD))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown}; expected any of {sorted(_BY_FIELD)}"
        )

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field in given:
            value = given[setting.field]
            if isinstance(value, str):
                value = _parse(setting, value, f"argument {setting.field}")
            elif setting.field == "policy" and isinstance(value, (dict, os.PathLike)):
                value = value if isinstance(value, dict) else os.fspath(value)
            elif not isinstance(value, type(setting.default)) or value is None:
                raise ConfigError(
                    f"argument {setting.field} has the value {value!r}; "
                    f"expected {setting.expected}"
                )
            values[setting.field] = value
        elif env.get(setting.env) is not None:
            values[setting.field] = _parse(setting, env[setting.env], setting.env)
        else:
            values[setting.field] = setting.default

    if values["function_name"] is None:
        values["function_name"] = env.get("AWS_LAMBDA_FUNCTION_NAME") or "local"
    values["function_version"] = env.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST"
    return Settings(**values)
