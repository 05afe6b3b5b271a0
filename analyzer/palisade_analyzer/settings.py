"""Every PALISADE_ANALYZER_* setting the analyzer reads, declared once.

Each entry of ``SETTINGS`` names the variable, its default, its parser and one line
of documentation (``docs/configuration.md`` is the same table in
prose). ``load_settings`` applies them: an explicit argument wins over the
environment, the environment wins over the default, and a bad value raises
:class:`~palisade.errors.ConfigError` naming the variable, the value found and the
values expected.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from palisade.errors import ConfigError

DEFAULT_DB = "./.palisade/analyzer.db"


@dataclass(frozen=True)
class Setting:
    """One PALISADE_ANALYZER_* variable: where it comes from and how it is read."""

    field: str
    env: str
    default: Any
    parse: Callable[[str], Any]
    expected: str
    doc: str


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError(value)
    return value


def _non_negative_int(text: str) -> int:
    value = int(text.strip())
    if value < 0:
        raise ValueError(value)
    return value


def _non_negative_float(text: str) -> float:
    value = float(text.strip())
    if not value >= 0:
        raise ValueError(value)
    return value


def _fraction(text: str) -> float:
    value = float(text.strip())
    if not 0 <= value <= 1:
        raise ValueError(value)
    return value


def _choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in values:
            raise ValueError(value)
        return value

    return parse


def _text(text: str) -> str:
    return text.strip()


def _sink_list(text: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    for item in items:
        scheme = item.split(":", 1)[0]
        if item != "stdout" and scheme not in ("file", "webhook", "sns", "eventbridge"):
            raise ValueError(item)
    return items


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "db",
        "PALISADE_ANALYZER_DB",
        DEFAULT_DB,
        _text,
        "a file path",
        "SQLite database file of the embedded store.",
    ),
    Setting(
        "backend",
        "PALISADE_ANALYZER_BACKEND",
        "sqlite",
        _choice("sqlite", "aws"),
        "sqlite or aws",
        "Storage backend: the embedded SQLite file, or DynamoDB + S3.",
    ),
    Setting(
        "table_prefix",
        "PALISADE_ANALYZER_TABLE_PREFIX",
        "palisade-analyzer-",
        _text,
        "a DynamoDB table name prefix",
        "Prefix of the DynamoDB tables (<prefix>profiles, <prefix>alerts).",
    ),
    Setting(
        "bucket",
        "PALISADE_ANALYZER_BUCKET",
        "",
        _text,
        "an S3 bucket name",
        "S3 bucket of the trail (aws backend).",
    ),
    Setting(
        "keys",
        "PALISADE_ANALYZER_KEYS",
        "",
        _text,
        'a keys JSON document {"keys": [...]} or the path of one',
        "Signing keys and the function globs each may report (docs/analyzer.md).",
    ),
    Setting(
        "max_batch_bytes",
        "PALISADE_ANALYZER_MAX_BATCH_BYTES",
        5 * 1024 * 1024,
        _positive_int,
        "a positive integer (bytes)",
        "Largest batch body accepted; larger ones get 413.",
    ),
    Setting(
        "max_skew_seconds",
        "PALISADE_ANALYZER_MAX_SKEW_SECONDS",
        300,
        _positive_int,
        "a positive integer (seconds)",
        "Replay window: a signed timestamp further than this from now gets 401.",
    ),
    Setting(
        "learn_min_invocations",
        "PALISADE_ANALYZER_LEARN_MIN_INVOCATIONS",
        30,
        _positive_int,
        "a positive integer",
        "Invocations a new function must show before its profile can be stable.",
    ),
    Setting(
        "learn_quiet_seconds",
        "PALISADE_ANALYZER_LEARN_QUIET_SECONDS",
        600,
        _non_negative_int,
        "a non-negative integer (seconds)",
        "Time without any new signature before a profile becomes stable.",
    ),
    Setting(
        "relearn_min_invocations",
        "PALISADE_ANALYZER_RELEARN_MIN_INVOCATIONS",
        10,
        _positive_int,
        "a positive integer",
        "Invocations a new code version needs (with the old profile as prior).",
    ),
    Setting(
        "decay_seconds",
        "PALISADE_ANALYZER_DECAY_SECONDS",
        30 * 24 * 3600,
        _positive_int,
        "a positive integer (seconds)",
        "Behaviour unseen this long (in data time) drops out of the profile.",
    ),
    Setting(
        "rare_fraction",
        "PALISADE_ANALYZER_RARE_FRACTION",
        0.01,
        _fraction,
        "a number between 0 and 1",
        "A known signature seen in fewer invocations than this share is rare.",
    ),
    Setting(
        "alert_min_score",
        "PALISADE_ANALYZER_ALERT_MIN_SCORE",
        0.3,
        _non_negative_float,
        "a non-negative number",
        "Score (newness x sensitivity) from which a behaviour raises an alert.",
    ),
    Setting(
        "rate_mads",
        "PALISADE_ANALYZER_RATE_MADS",
        6.0,
        _non_negative_float,
        "a non-negative number",
        "A per-invocation rate alerts past median + this many scaled MADs.",
    ),
    Setting(
        "rate_min_delta",
        "PALISADE_ANALYZER_RATE_MIN_DELTA",
        10,
        _positive_int,
        "a positive integer",
        "A rate jump must also exceed the median by at least this much.",
    ),
    Setting(
        "evidence_max",
        "PALISADE_ANALYZER_EVIDENCE_MAX",
        5,
        _positive_int,
        "a positive integer",
        "Events kept as evidence of an alert's first occurrence.",
    ),
    Setting(
        "sinks",
        "PALISADE_ANALYZER_SINKS",
        (),
        _sink_list,
        "a comma list of stdout, file:PATH, webhook:URL, sns:ARN, eventbridge:BUS",
        "Where new alerts are sent.",
    ),
    Setting(
        "alert_format",
        "PALISADE_ANALYZER_ALERT_FORMAT",
        "native",
        _choice("native", "ocsf"),
        "native or ocsf",
        "Format of the alerts sent to sinks.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The analyzer's configuration; see ``SETTINGS`` for each field."""

    db: str = DEFAULT_DB
    backend: str = "sqlite"
    table_prefix: str = "palisade-analyzer-"
    bucket: str = ""
    keys: str = ""
    max_batch_bytes: int = 5 * 1024 * 1024
    max_skew_seconds: int = 300
    learn_min_invocations: int = 30
    learn_quiet_seconds: int = 600
    relearn_min_invocations: int = 10
    decay_seconds: int = 30 * 24 * 3600
    rare_fraction: float = 0.01
    alert_min_score: float = 0.3
    rate_mads: float = 6.0
    rate_min_delta: int = 10
    evidence_max: int = 5
    sinks: tuple[str, ...] = ()
    alert_format: str = "native"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def load_settings(
    environ: Mapping[str, str] | None = None, **explicit: Any
) -> Settings:
    """Build :class:`Settings` from explicit arguments, the environment, defaults.

    Raises:
        ConfigError: a variable holds a value its parser refuses.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if explicit.get(setting.field) is not None:
            values[setting.field] = explicit[setting.field]
            continue
        raw = env.get(setting.env)
        if raw is None or raw == "":
            values[setting.field] = setting.default
            continue
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{setting.env}={raw!r} is not valid: expected {setting.expected}"
            ) from exc
    unknown = set(explicit) - {s.field for s in SETTINGS}
    if unknown:
        raise ConfigError(
            f"unknown analyzer setting(s) {sorted(unknown)}; expected one of "
            f"{[s.field for s in SETTINGS]}"
        )
    return Settings(**values)


def _shown_default(setting: Setting) -> str:
    value = setting.default
    if value in ("", ()):
        return "unset"
    return f"`{value}`"


def markdown_table() -> str:
    """The settings as the Markdown table in docs/configuration.md."""
    lines = [
        "| Variable | Default | Accepts | Effect |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        lines.append(f"| `{s.env}` | {_shown_default(s)} | {s.expected} | {s.doc} |")
    return "\n".join(lines) + "\n"
