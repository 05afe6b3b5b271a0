"""``kinesis``, ``firehose`` and ``sqs``: AWS streams through boto3.

Each batch is one message (a JSON document, newline-terminated for Firehose so
that objects in S3 are JSON lines), split into ``<batch_id>.<n>`` parts when it
exceeds the service's size limit. With PALISADE_ANALYZER_KEY set, Kinesis and SQS
messages are ``palisade.signed/1`` envelopes (see ``signed``) that the analyzer's
stream consumer authenticates; Firehose records stay plain JSON lines for S3.
The partition key (Kinesis) and message group (FIFO SQS) are the function name,
so one function's batches stay in order.
Endpoints follow boto3's own rules, including ``AWS_ENDPOINT_URL``.

Limitation: a partly failed PutRecords / PutRecordBatch is re-sent whole; the
receiver's deduplication by ``batch_id`` absorbs the repeats.
"""

from __future__ import annotations

import threading
from typing import Any

from palisade_extension.errors import ConfigError, SinkError
from palisade_extension.sinks.base import encode, split
from palisade_extension.sinks.signed import AnalyzerKey

# Service limits, kept a little under the documented ones.
KINESIS_RECORD_MAX = 1_000_000  # 1 MiB per record, partition key included
KINESIS_REQUEST_MAX = 5_000_000  # PutRecords: 10 MiB now, 5 MiB historically
KINESIS_REQUEST_RECORDS = 500
FIREHOSE_RECORD_MAX = 1_000_000  # 1,000 KiB per record
FIREHOSE_REQUEST_MAX = 4_000_000  # 4 MiB per PutRecordBatch
FIREHOSE_REQUEST_RECORDS = 500
SQS_MESSAGE_MAX = 250_000  # 256 KiB on older queues, 1 MiB on newer ones


class _Boto:
    """A lazily created boto3 client (boto3 costs ~100 ms to import)."""

    def __init__(self, service: str, timeout_s: float):
        self._service = service
        self._timeout = timeout_s
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"max_attempts": 1, "mode": "standard"},
                )
                factory: Any = boto3.client
                self._client = factory(self._service, config=config)
            return self._client


def _call(what: str, func: Any, **kwargs: Any) -> Any:
    try:
        return func(**kwargs)
    except Exception as exc:  # botocore raises many types; all mean "retry later"
        raise SinkError(f"{what} failed: {exc}") from exc


def _wire(key: AnalyzerKey | None) -> Any:
    """The bytes one part becomes on a stream: signed envelope or plain JSON."""
    if key is None:
        return encode
    return lambda part: key.envelope(encode(part))


def _groups(items: list[bytes], max_bytes: int, max_count: int) -> list[list[bytes]]:
    groups: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for item in items:
        if current and (size + len(item) > max_bytes or len(current) >= max_count):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item)
    if current:
        groups.append(current)
    return groups


class KinesisSink:
    """PutRecords to ``PALISADE_STREAM_NAME``, partition key = function name."""

    key = "kinesis"

    def __init__(self, stream: str, timeout_s: float, key: AnalyzerKey | None = None):
        if not stream:
            raise ConfigError(
                "PALISADE_SINK includes kinesis but PALISADE_STREAM_NAME is empty"
            )
        self.stream = stream
        self._wire = _wire(key)
        self._boto = _Boto("kinesis", timeout_s)

    def send(self, batch: dict[str, Any]) -> None:
        partition = str(batch["source"]["function"])[:256]
        limit = KINESIS_RECORD_MAX - len(partition.encode("utf-8"))
        parts = split(batch, limit, lambda part: len(self._wire(part)))
        data = [self._wire(part) for part in parts]
        client = self._boto.client()
        for group in _groups(data, KINESIS_REQUEST_MAX, KINESIS_REQUEST_RECORDS):
            answer = _call(
                f"Kinesis PutRecords to {self.stream}",
                client.put_records,
                StreamName=self.stream,
                Records=[{"Data": d, "PartitionKey": partition} for d in group],
            )
            if answer.get("FailedRecordCount"):
                raise SinkError(
                    f"Kinesis refused {answer['FailedRecordCount']} of "
                    f"{len(group)} records of batch {batch['batch_id']}"
                )


class FirehoseSink:
    """PutRecordBatch to ``PALISADE_DELIVERY_STREAM``, one JSON line per part."""

    key = "firehose"

    def __init__(self, stream: str, timeout_s: float):
        if not stream:
            raise ConfigError(
                "PALISADE_SINK includes firehose but PALISADE_DELIVERY_STREAM is empty"
            )
        self.stream = stream
        self._boto = _Boto("firehose", timeout_s)

    def send(self, batch: dict[str, Any]) -> None:
        data = [encode(part) + b"\n" for part in split(batch, FIREHOSE_RECORD_MAX - 1)]
        client = self._boto.client()
        for group in _groups(data, FIREHOSE_REQUEST_MAX, FIREHOSE_REQUEST_RECORDS):
            answer = _call(
                f"Firehose PutRecordBatch to {self.stream}",
                client.put_record_batch,
                DeliveryStreamName=self.stream,
                Records=[{"Data": d} for d in group],
            )
            if answer.get("FailedPutCount"):
                raise SinkError(
                    f"Firehose refused {answer['FailedPutCount']} of {len(group)} "
                    f"records of batch {batch['batch_id']}"
                )


class SqsSink:
    """SendMessage to ``PALISADE_QUEUE_URL``; FIFO queues dedupe by batch id."""

    key = "sqs"

    def __init__(
        self, queue_url: str, timeout_s: float, key: AnalyzerKey | None = None
    ):
        if not queue_url:
            raise ConfigError(
                "PALISADE_SINK includes sqs but PALISADE_QUEUE_URL is empty"
            )
        self.queue_url = queue_url
        self._wire = _wire(key)
        self._fifo = queue_url.endswith(".fifo")
        self._boto = _Boto("sqs", timeout_s)

    def send(self, batch: dict[str, Any]) -> None:
        client = self._boto.client()
        function = str(batch["source"]["function"])
        for part in split(batch, SQS_MESSAGE_MAX, lambda p: len(self._wire(p))):
            kwargs: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MessageBody": self._wire(part).decode("utf-8"),
                "MessageAttributes": {
                    "function": {"DataType": "String", "StringValue": function},
                    "batch_id": {"DataType": "String", "StringValue": part["batch_id"]},
                },
            }
            if self._fifo:
                kwargs["MessageGroupId"] = function[:128]
                kwargs["MessageDeduplicationId"] = part["batch_id"][:128]
            _call(f"SQS SendMessage to {self.queue_url}", client.send_message, **kwargs)
