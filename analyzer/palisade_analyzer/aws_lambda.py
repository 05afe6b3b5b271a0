"""The analyzer as AWS Lambda functions: Function URL, Kinesis and SQS ingest.

    function_url_handler  Function URL: ``POST /v1/batches``, ``GET /v1/health``
    kinesis_handler       Kinesis event source, partial batch failure reporting
    sqs_handler           SQS event source, partial batch failure reporting

Each calls the analyzer's own ingest path (:mod:`palisade_analyzer.ingest`) on
the DynamoDB + S3 store named by the ``PALISADE_ANALYZER_*`` settings
(``PALISADE_ANALYZER_BACKEND=aws``, ``_TABLE_PREFIX``, ``_BUCKET``, ``_SINKS``,
``_ALERT_FORMAT``), built once per execution environment. Powertools provides the
structured logs (``POWERTOOLS_SERVICE_NAME``), the metrics in CloudWatch embedded
metric format (``POWERTOOLS_METRICS_NAMESPACE``, default ``Palisade``) and the
batch processing. A message the analyzer refuses for good (a 4xx: bad signature,
schema, unknown key) is counted and dropped, since a retry would fail again; only
the analyzer's own failures (5xx) are reported back as failed items, so the event
source retries those alone.

Shortcomings: signing keys are read from Secrets Manager at most every
``KEYS_MAX_AGE_S`` seconds, so a rotated key is accepted (and a revoked one
refused) up to that long after the change; stream messages must be
``palisade.signed/1`` envelopes (see ``palisade_analyzer.ingest``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from palisade.errors import ConfigError

from .ingest import Ingestor, IngestResult, ingest_function_url, ingest_message
from .settings import Settings, load_settings
from .signing import KeyRing
from .sinks import Dispatcher, sink_from_spec

KEYS_MAX_AGE_S = 300.0


@dataclass(frozen=True)
class LambdaSetting:
    """A setting only the Lambda handlers read."""

    env: str
    default: str
    doc: str


LAMBDA_SETTINGS: tuple[LambdaSetting, ...] = (
    LambdaSetting(
        "PALISADE_ANALYZER_KEYS_SECRET",
        "",
        "Secrets Manager secret (name or ARN) whose text is the signing keys "
        'document {"keys": [...]} or one key {"id", "secret", "functions"}; '
        "when empty, PALISADE_ANALYZER_KEYS is used.",
    ),
)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "palisade-analyzer"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Palisade"))


class Analyzer:
    """The ingestor of one execution environment and where its keys come from.

    Args:
        settings: the analyzer's settings; ``backend`` must be ``aws``.
        keys_secret: a Secrets Manager secret id, or empty for ``settings.keys``.
        store: a store to use instead of the one the settings name (tests).
        clock: the time source of the key refresh.
    """

    def __init__(
        self,
        settings: Settings,
        keys_secret: str = "",
        store: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if store is None:
            if settings.backend != "aws":
                raise ConfigError(
                    "the Lambda handlers store in DynamoDB and S3: expected "
                    f"PALISADE_ANALYZER_BACKEND=aws, found {settings.backend!r}"
                )
            from .aws_store import AWSStore

            store = AWSStore(table_prefix=settings.table_prefix, bucket=settings.bucket)
        self.keys_secret = keys_secret
        self.clock = clock
        self.dispatcher = Dispatcher(
            [sink_from_spec(spec) for spec in settings.sinks], settings.alert_format
        )
        self.ingestor = Ingestor(store, KeyRing(), settings, on_alert=self.dispatcher)
        self._keys_static = settings.keys
        self._secrets: Any = None
        self._keys_loaded_at: float | None = None
        self.refresh_keys()

    def refresh_keys(self) -> None:
        """Reload the signing keys when they are older than ``KEYS_MAX_AGE_S``.

        Raises:
            ConfigError: the keys document is not valid (at the first load only;
                afterwards the keys already loaded stay in use and it is logged).
        """
        now = self.clock()
        if (
            self._keys_loaded_at is not None
            and now - self._keys_loaded_at < KEYS_MAX_AGE_S
        ):
            return
        try:
            ring = self._load_keys()
        except (ConfigError, ValueError) as exc:
            if self._keys_loaded_at is None:
                raise
            logger.error("signing keys not refreshed, the old ones stay: %s", exc)
            return
        if not len(ring):
            logger.error(
                "no signing keys are configured (PALISADE_ANALYZER_KEYS_SECRET or "
                "PALISADE_ANALYZER_KEYS): every batch is refused as unknown_key"
            )
        self.ingestor.keys = ring
        self._keys_loaded_at = now

    def _load_keys(self) -> KeyRing:
        if not self.keys_secret:
            return KeyRing.load(self._keys_static)
        if self._secrets is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            # A provider of our own: Powertools' shared default keeps the first
            # client it made, whatever endpoint and credentials were in force.
            self._secrets = SecretsProvider()
        text = self._secrets.get(self.keys_secret, force_fetch=True)
        source = f"secret {self.keys_secret}"
        try:
            doc = json.loads(text if isinstance(text, str) else bytes(text or b""))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
        if isinstance(doc, Mapping) and "keys" not in doc and "id" in doc:
            # A secret generated by CloudFormation holds a single key object.
            doc = {"keys": [doc]}
        return KeyRing.from_document(doc, source)


_analyzer: Analyzer | None = None
_lock = threading.Lock()


def analyzer() -> Analyzer:
    """The execution environment's analyzer, built on first use from the env.

    Raises:
        ConfigError: a setting is invalid; the invocation fails and is retried
            by its event source, so no batch is lost to a configuration error.
    """
    global _analyzer
    with _lock:
        if _analyzer is None:
            _analyzer = Analyzer(
                load_settings(),
                keys_secret=os.environ.get("PALISADE_ANALYZER_KEYS_SECRET", ""),
            )
        else:
            _analyzer.refresh_keys()
        return _analyzer


def reset(instance: Analyzer | None = None) -> None:
    """Forget the cached analyzer (or install ``instance``); for tests."""
    global _analyzer
    with _lock:
        _analyzer = instance


def _measure(result: IngestResult, source: str) -> None:
    """Count one ingest outcome as metrics and log a refusal."""
    metrics.add_dimension(name="source", value=source)
    if result.status == 202:
        metrics.add_metric(name="BatchesStored", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="RecordsStored", unit=MetricUnit.Count, value=result.stored
        )
    elif result.status == 200:
        metrics.add_metric(name="BatchesDuplicate", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="BatchesRejected", unit=MetricUnit.Count, value=1)
        logger.warning(
            "batch refused",
            extra={"status": result.status, "code": result.code, "why": result.message},
        )
    if result.rejected_records:
        metrics.add_metric(
            name="RecordsRejected", unit=MetricUnit.Count, value=result.rejected_records
        )
    if result.new_alerts:
        metrics.add_metric(
            name="AlertsRaised", unit=MetricUnit.Count, value=len(result.new_alerts)
        )


class RetryableIngestError(Exception):
    """The analyzer failed on its side (5xx): the message is retried."""


def _ingest_message(data: bytes, source: str) -> None:
    result = ingest_message(analyzer().ingestor, data)
    _measure(result, source)
    if result.status >= 500:
        raise RetryableIngestError(f"{result.code}: {result.message}")


# -------------------------------------------------------------- Function URL

app = LambdaFunctionUrlResolver()


@app.post("/v1/batches")
def post_batch() -> Response[str]:
    """One signed batch; the analyzer's status and JSON answer pass through."""
    event = app.current_event
    context = event.raw_event.get("requestContext") or {}
    caller = (context.get("authorizer") or {}).get("iam") or {}
    if caller:
        logger.append_keys(caller=caller.get("userArn") or caller.get("callerId"))
    answer = ingest_function_url(analyzer().ingestor, event.raw_event)
    status = int(answer["statusCode"])
    document = json.loads(answer["body"])
    _measure(
        IngestResult(
            status=status,
            code=str(document.get("status") or document.get("error") or ""),
            message=str(document.get("message", "")),
            stored=int(document.get("stored", 0) or 0),
            rejected_records=int(document.get("rejected_records", 0) or 0),
        ),
        "url",
    )
    if document.get("alerts"):
        metrics.add_metric(
            name="AlertsRaised", unit=MetricUnit.Count, value=len(document["alerts"])
        )
    return Response(
        status_code=status, content_type="application/json", body=answer["body"]
    )


@app.get("/v1/health")
def health() -> dict[str, Any]:
    """Liveness and the ingest counters of the store."""
    return {"status": "ok", "stats": analyzer().ingestor.store.stats()}


@logger.inject_lambda_context
@metrics.log_metrics
def function_url_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    """Handle a Function URL request (payload format 2.0)."""
    return app.resolve(event, context)


# -------------------------------------------------------------- Kinesis, SQS

_kinesis = BatchProcessor(event_type=EventType.KinesisDataStreams)
_sqs = BatchProcessor(event_type=EventType.SQS)


def _kinesis_record(record: KinesisStreamRecord) -> None:
    _ingest_message(record.kinesis.data_as_bytes(), "kinesis")


def _sqs_record(record: SQSRecord) -> None:
    _ingest_message(record.body.encode("utf-8"), "sqs")


@logger.inject_lambda_context
@metrics.log_metrics
def kinesis_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    """Handle a Kinesis batch; return ``batchItemFailures`` for retryable ones."""
    return process_partial_response(
        event=event, record_handler=_kinesis_record, processor=_kinesis, context=context
    )


@logger.inject_lambda_context
@metrics.log_metrics
def sqs_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    """Handle an SQS batch; return ``batchItemFailures`` for retryable ones."""
    return process_partial_response(
        event=event, record_handler=_sqs_record, processor=_sqs, context=context
    )
