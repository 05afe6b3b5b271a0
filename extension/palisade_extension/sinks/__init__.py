"""Where batches go: the analyzer, OTLP, AWS streams or a file.

``build(names, settings)`` turns the PALISADE_SINK list into sink objects; a sink
whose configuration is incomplete is reported once and left out, so the others
still work.
"""

from __future__ import annotations

import logging
from typing import Any

from palisade_extension.errors import ConfigError
from palisade_extension.sinks.base import Sink, encode, split

log = logging.getLogger(__name__)

__all__ = ["Sink", "build", "encode", "split"]


def build(names: tuple[str, ...], settings: dict[str, Any]) -> list[Sink]:
    """Create the sinks named in ``names`` (the parsed PALISADE_SINK)."""
    timeout = settings["PALISADE_SINK_TIMEOUT_MS"] / 1000.0
    sinks: list[Sink] = []
    for name in names:
        try:
            sinks.append(_one(name, settings, timeout))
        except ConfigError as exc:
            log.error("sink %s left out: %s", name, exc)
        except ImportError as exc:
            log.error("sink %s left out: a library it needs is missing (%s)", name, exc)
    return sinks


def _one(name: str, settings: dict[str, Any], timeout: float) -> Sink:
    if name.startswith("file:"):
        from palisade_extension.sinks.file import FileSink

        return FileSink(name[len("file:") :])
    if name == "http":
        from palisade_extension.sinks.http import HttpSink

        return HttpSink(
            settings["PALISADE_ANALYZER_URL"],
            settings["PALISADE_ANALYZER_KEY"],
            timeout,
        )
    if name == "otlp":
        from palisade_extension.sinks.otlp import OtlpSink

        return OtlpSink()
    from palisade_extension.sinks import aws
    from palisade_extension.sinks.signed import AnalyzerKey

    key_text = settings["PALISADE_ANALYZER_KEY"]
    key = AnalyzerKey.parse(key_text) if key_text else None
    if name == "kinesis":
        return aws.KinesisSink(settings["PALISADE_STREAM_NAME"], timeout, key)
    if name == "firehose":
        return aws.FirehoseSink(settings["PALISADE_DELIVERY_STREAM"], timeout)
    if name == "sqs":
        return aws.SqsSink(settings["PALISADE_QUEUE_URL"], timeout, key)
    raise ConfigError(f"unknown sink {name!r}")
