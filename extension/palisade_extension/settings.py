"""Every PALISADE_* setting the extension reads, declared once.

Each row of ``SETTINGS`` names the variable, its default, the parser that turns the
text into a value and the sentence that documents it. ``load()`` reads them all at
start; a bad value is reported once and the default is used, because the extension
must never stop the function from running over its own configuration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from palisade_extension.errors import ConfigError

log = logging.getLogger(__name__)


def _text(raw: str) -> str:
    return raw.strip()


def _int_min(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _float_min(minimum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _switch(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError("expected on or off")


def _sinks(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for name in names:
        known = name in ("http", "otlp", "kinesis", "firehose", "sqs")
        if not known and not name.startswith("file:"):
            raise ValueError(
                f"unknown sink {name!r}; expected http, otlp, kinesis, "
                "firehose, sqs or file:PATH"
            )
    return names


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, how it is parsed and what it does."""

    name: str
    default: str
    parse: Callable[[str], Any]
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "PALISADE_EXTENSION_SOCKET",
        "/tmp/palisade/extension.sock",
        _text,
        "Unix socket the layer sends its records to; created before registering.",
    ),
    Setting(
        "PALISADE_EXTENSION_KEY",
        "/tmp/palisade/extension.key",
        _text,
        "File (mode 0600) receiving the 32-byte hex key that signs every frame.",
    ),
    Setting(
        "PALISADE_SINK",
        "http",
        _sinks,
        "Where batches go: comma list of http, otlp, kinesis, firehose, sqs, "
        "file:PATH.",
    ),
    Setting(
        "PALISADE_ANALYZER_URL",
        "",
        _text,
        "Base URL of the analyzer for the http sink (batches go to /v1/batches).",
    ),
    Setting(
        "PALISADE_ANALYZER_KEY",
        "",
        _text,
        "'<key_id>:<secret>' used to sign each batch for the http sink.",
    ),
    Setting(
        "PALISADE_STREAM_NAME", "", _text, "Kinesis data stream of the kinesis sink."
    ),
    Setting(
        "PALISADE_DELIVERY_STREAM",
        "",
        _text,
        "Firehose delivery stream of the firehose sink.",
    ),
    Setting("PALISADE_QUEUE_URL", "", _text, "SQS queue URL of the sqs sink."),
    Setting(
        "PALISADE_SINK_TIMEOUT_MS",
        "2000",
        _int_min(10),
        "Network timeout of one sink request.",
    ),
    Setting(
        "PALISADE_RECORD_WAIT_MS",
        "300",
        _int_min(0),
        "How long after platform.runtimeDone to wait for the request's record "
        "before calling /next (never past the deadline).",
    ),
    Setting(
        "PALISADE_SHIP_WAIT_MS",
        "500",
        _int_min(0),
        "How long to wait for the batch to be delivered before calling /next; "
        "what is not delivered by then stays spooled and is re-sent on the next "
        "thaw.",
    ),
    Setting(
        "PALISADE_DEADLINE_MARGIN_MS",
        "50",
        _int_min(0),
        "Time kept free before the invocation's deadline.",
    ),
    Setting(
        "PALISADE_SPOOL_DIR",
        "",
        _text,
        "Directory of undelivered batches and not yet batched records; empty: "
        "spool/ beside the socket (/tmp/palisade/spool).",
    ),
    Setting(
        "PALISADE_SPOOL_MAX_BYTES",
        str(32 * 1024 * 1024),
        _int_min(4096),
        "Upper bound of the spool; the oldest batches are dropped (counted as "
        "spool-full) beyond it.",
    ),
    Setting(
        "PALISADE_POLICY",
        "",
        _text,
        "The function's policy: ssm:/parameter/name, a file path, or inline "
        "JSON/YAML; served to the layer on request.",
    ),
    Setting(
        "PALISADE_EXTENSION_POLICY",
        "",
        _text,
        "The policy the extension serves when PALISADE_POLICY is 'extension' "
        "(the layer's way to say: ask the extension); same forms as "
        "PALISADE_POLICY.",
    ),
    Setting(
        "PALISADE_POLICY_REFRESH_S",
        "60",
        _float_min(0),
        "How often an SSM policy is re-read between invokes (0: never).",
    ),
    Setting(
        "PALISADE_ON_ERROR",
        "open",
        _choice("open", "closed"),
        "What an unavailable or invalid policy does at start: open serves no "
        "policy and logs; closed reports an init error.",
    ),
    Setting(
        "PALISADE_OUTSIDE_VIEW",
        "on",
        _switch,
        "Sample the runtime process from /proc between invokes.",
    ),
    Setting(
        "PALISADE_OUTSIDE_BUDGET_MS",
        "10",
        _int_min(0),
        "How long /next waits for the /proc sample of the invocation; a slower "
        "sample reports in a later batch.",
    ),
    Setting(
        "PALISADE_OUTSIDE_MAX_ENTRIES",
        "64",
        _int_min(1),
        "Most findings one sample may report.",
    ),
    Setting(
        "PALISADE_RUNTIME_PID",
        "",
        _text,
        "Process id of the runtime, when the host knows it; otherwise it is found "
        "in /proc.",
    ),
    Setting(
        "PALISADE_TELEMETRY_HOST",
        "auto",
        _text,
        "Host the Telemetry API listener binds and advertises; auto: "
        "sandbox.localdomain in Lambda (runtime API at 127.0.0.1:9001), else the "
        "runtime API's host.",
    ),
    Setting(
        "PALISADE_EXTENSION_LOG_LEVEL",
        "WARNING",
        _choice("debug", "info", "warning", "error"),
        "Level of the extension's own log lines (stderr, so CloudWatch).",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting; a bad value is logged and replaced by its default.

    Returns:
        A dict from variable name to parsed value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.name)
        if raw is None or raw == "":
            values[setting.name] = setting.parse(setting.default)
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            log.error(
                "%s",
                ConfigError(
                    f"{setting.name}={raw!r} is not valid ({exc}); using the "
                    f"default {setting.default!r}"
                ),
            )
            values[setting.name] = setting.parse(setting.default)
    if values["PALISADE_POLICY"] == "extension":
        values["PALISADE_POLICY"] = values["PALISADE_EXTENSION_POLICY"]
    if not values["PALISADE_SPOOL_DIR"]:
        socket_dir = os.path.dirname(values["PALISADE_EXTENSION_SOCKET"]) or "."
        values["PALISADE_SPOOL_DIR"] = os.path.join(socket_dir, "spool")
    return values


def parse(name: str, raw: str) -> Any:
    """Parse one value the way ``load`` would, raising on a bad value.

    Raises:
        ConfigError: the value does not fit the setting.
    """
    setting = _BY_NAME[name]
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{name}={raw!r} is not valid ({exc}); default is {setting.default!r}"
        ) from exc


def markdown_table() -> str:
    """The settings as the Markdown table in docs/configuration.md."""
    lines = ["| Variable | Default | Effect |", "|---|---|---|"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "unset"
        lines.append(f"| `{setting.name}` | {default} | {setting.doc} |")
    return "\n".join(lines)
