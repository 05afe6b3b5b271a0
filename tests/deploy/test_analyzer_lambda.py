"""The analyzer's Lambda handlers end to end on moto: stream in, store, alert out.

Kinesis: a batch put on a (moto) stream is read back with GetRecords, turned into
the event Lambda would deliver, and handed to ``kinesis_handler``; the batches land
in DynamoDB and S3, and the alert reaches an SQS queue subscribed to the SNS topic.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy_support import kinesis_event
from moto import mock_aws
from palisade_analyzer import aws_lambda
from palisade_analyzer.aws_store import AWSStore
from palisade_analyzer.ingest import signed_envelope
from palisade_analyzer.settings import load_settings
from palisade_analyzer.signing import signed_headers

pytestmark = pytest.mark.aws

REGION = "us-east-1"
FUNCTION = "orders-api"
KEY = {"id": "orders", "secret": "a-long-enough-signing-secret", "functions": ["*"]}
URL_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/v1/batches",
    "rawQueryString": "",
    "headers": {"content-type": "application/json"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "urlid",
        "authorizer": {
            "iam": {"userArn": "arn:aws:sts::123456789012:assumed-role/x/y"}
        },
        "domainName": "urlid.lambda-url.us-east-1.on.aws",
        "http": {
            "method": "POST",
            "path": "/v1/batches",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "palisade",
        },
        "requestId": "req",
        "routeKey": "$default",
        "stage": "$default",
        "time": "04/Dec/2026:07:00:00 +0000",
        "timeEpoch": 1796367600000,
    },
    "isBase64Encoded": False,
}


@dataclass
class Context:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "palisade-analyzer-ingest"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:palisade-analyzer-ingest"
    )
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def _event(seq: int, kind: str, op: str, target: str, **extra: Any) -> dict[str, Any]:
    event = {
        "seq": seq,
        "ts": time.time(),
        "kind": kind,
        "op": op,
        "target": target,
        "detail": {},
        "module": "app",
        "verdict": "allowed",
        "rule": "unlisted",
        "request_id": "r-1",
    }
    event.update(extra)
    return event


def _batch(*, shell: bool, batch_id: str | None = None) -> bytes:
    """One batch of one invocation record; with ``shell`` a blocked shell spawn."""
    request_id = str(uuid.uuid4())
    events = [_event(0, "file", "read", "/var/task/app.py", request_id=request_id)]
    if shell:
        events.append(
            _event(
                1,
                "process",
                "spawn",
                "/bin/sh",
                detail={"argv": ["/bin/sh", "-c", "id"], "shell": True},
                verdict="blocked",
                rule="builtin:shell-spawn",
                request_id=request_id,
            )
        )
    record = {
        "schema": "palisade.record/1",
        "function": FUNCTION,
        "version": "7",
        "request_id": request_id,
        "cold_start": False,
        "started_at": time.time(),
        "duration_ms": 12.5,
        "outcome": "success",
        "events": events,
        "dropped": 0,
    }
    batch = {
        "schema": "palisade.batch/1",
        "batch_id": batch_id or uuid.uuid4().hex,
        "sent_at": time.time(),
        "source": {"function": FUNCTION, "version": "7", "region": REGION},
        "records": [record],
    }
    return json.dumps(batch).encode()


def _envelope(body: bytes) -> bytes:
    return signed_envelope(KEY["id"], KEY["secret"], body, int(time.time()))


@pytest.fixture
def aws(fake_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto with the analyzer's resources, and the handlers' env pointing at them."""
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName="ingest", ShardCount=1)
        stream_arn = kinesis.describe_stream(StreamName="ingest")["StreamDescription"][
            "StreamARN"
        ]
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="analyzer-keys", SecretString=json.dumps(KEY)
        )["ARN"]
        store = AWSStore(table_prefix="test-", bucket="trail", region=REGION)
        store.create_tables()

        env = {
            "PALISADE_ANALYZER_BACKEND": "aws",
            "PALISADE_ANALYZER_TABLE_PREFIX": "test-",
            "PALISADE_ANALYZER_BUCKET": "trail",
            "PALISADE_ANALYZER_SINKS": f"sns:{topic}",
            "PALISADE_ANALYZER_KEYS_SECRET": secret,
            "POWERTOOLS_METRICS_NAMESPACE": "PalisadeTest",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        aws_lambda.reset()
        try:
            yield {
                "kinesis": kinesis,
                "stream_arn": stream_arn,
                "sqs": sqs,
                "queue_url": queue_url,
                "store": store,
            }
        finally:
            aws_lambda.reset()


def _kinesis_event(aws: dict[str, Any]) -> dict[str, Any]:
    """What Lambda's event source mapping delivers, from moto's GetRecords."""
    return kinesis_event(aws["kinesis"], aws["stream_arn"], REGION)


def _alerts_received(aws: dict[str, Any]) -> list[dict[str, Any]]:
    answer = aws["sqs"].receive_message(
        QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [
        json.loads(json.loads(m["Body"])["Message"]) for m in answer.get("Messages", [])
    ]


def test_kinesis_batch_is_stored_and_alert_published(aws: dict[str, Any]) -> None:
    """Put → GetRecords → handler → DynamoDB + S3 trail → SNS → subscribed SQS."""
    messages = [_envelope(_batch(shell=False)), _envelope(_batch(shell=True))]
    aws["kinesis"].put_records(
        StreamName="ingest",
        Records=[{"Data": m, "PartitionKey": FUNCTION} for m in messages],
    )
    event = _kinesis_event(aws)
    assert len(event["Records"]) == 2

    answer = aws_lambda.kinesis_handler(event, Context())

    assert answer == {"batchItemFailures": []}
    store: AWSStore = aws["store"]
    assert store.functions() == [FUNCTION]
    assert [v.version for v in store.versions(FUNCTION)] == ["7"]
    stats = store.stats()
    assert (stats["batches.stored"], stats["alerts.new"]) == (2, 1)
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket="trail", Prefix=f"trail/function={FUNCTION}/"
    )
    assert listed["KeyCount"] == 2

    alerts = _alerts_received(aws)
    assert len(alerts) == 1
    assert alerts[0]["function"] == FUNCTION
    assert "/bin/sh" in json.dumps(alerts[0])


def test_redelivered_batch_is_stored_once(aws: dict[str, Any]) -> None:
    """At-least-once delivery: the same batch twice leaves one trail object."""
    message = _envelope(_batch(shell=False, batch_id="batch-0001"))
    aws["kinesis"].put_records(
        StreamName="ingest",
        Records=[{"Data": message, "PartitionKey": FUNCTION} for _ in range(2)],
    )
    assert aws_lambda.kinesis_handler(_kinesis_event(aws), Context()) == {
        "batchItemFailures": []
    }
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket="trail", Prefix=f"trail/function={FUNCTION}/"
    )
    assert listed["KeyCount"] == 1
    assert aws["store"].stats()["batches.duplicate"] == 1


def test_refused_message_is_dropped_not_retried(aws: dict[str, Any]) -> None:
    """An unsigned or forged message is a 4xx: counted, dropped, no retry asked."""
    forged = json.loads(_envelope(_batch(shell=False)))
    forged["headers"]["X-Palisade-Signature"] = "v1=" + "0" * 64
    aws["kinesis"].put_records(
        StreamName="ingest",
        Records=[
            {"Data": _batch(shell=False), "PartitionKey": FUNCTION},
            {"Data": json.dumps(forged).encode(), "PartitionKey": FUNCTION},
            {"Data": _envelope(_batch(shell=False)), "PartitionKey": FUNCTION},
        ],
    )
    assert aws_lambda.kinesis_handler(_kinesis_event(aws), Context()) == {
        "batchItemFailures": []
    }
    stats = aws["store"].stats()
    assert stats["rejected.missing_signature"] == 1
    assert stats["rejected.bad_signature"] == 1
    assert aws["store"].functions() == [FUNCTION]


def test_our_failure_is_reported_for_that_record_only(aws: dict[str, Any]) -> None:
    """A store failure on one batch returns only its sequence number for retry."""
    real = AWSStore(table_prefix="test-", bucket="trail", region=REGION)
    original = real.apply

    def apply(delta: Any) -> Any:
        if delta.batch_id == "poison-batch":
            raise ConnectionError("DynamoDB endpoint unreachable")
        return original(delta)

    real.apply = apply  # type: ignore[method-assign]
    aws_lambda.reset(
        aws_lambda.Analyzer(
            load_settings(),
            keys_secret=aws_lambda.os.environ["PALISADE_ANALYZER_KEYS_SECRET"],
            store=real,
        )
    )
    aws["kinesis"].put_records(
        StreamName="ingest",
        Records=[
            {"Data": _envelope(_batch(shell=False)), "PartitionKey": FUNCTION},
            {
                "Data": _envelope(_batch(shell=False, batch_id="poison-batch")),
                "PartitionKey": FUNCTION,
            },
        ],
    )
    event = _kinesis_event(aws)
    answer = aws_lambda.kinesis_handler(event, Context())
    poison = event["Records"][1]["kinesis"]["sequenceNumber"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": poison}]}


def test_sqs_handler_stores_and_reports(aws: dict[str, Any]) -> None:
    """The SQS consumer applies envelopes from message bodies the same way."""
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    bodies = [
        _envelope(_batch(shell=False)),
        b"not json",
        _envelope(_batch(shell=True)),
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body.decode())
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
    )["Messages"]
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for m in received
        ]
    }
    assert len(event["Records"]) == 3

    assert aws_lambda.sqs_handler(event, Context()) == {"batchItemFailures": []}
    assert aws["store"].functions() == [FUNCTION]
    assert aws["store"].stats()["rejected.missing_signature"] == 1
    assert len(_alerts_received(aws)) == 1


def test_function_url_ingests_signed_batch(aws: dict[str, Any]) -> None:
    """POST /v1/batches through the Function URL handler answers 202, then 200."""
    body = _batch(shell=False, batch_id="url-batch-1")
    headers = signed_headers(KEY["id"], KEY["secret"], body, int(time.time()))
    event = copy.deepcopy(URL_EVENT)
    event["headers"].update(headers)
    event["body"] = body.decode()

    first = aws_lambda.function_url_handler(event, Context())
    again = aws_lambda.function_url_handler(copy.deepcopy(event), Context())

    assert first["statusCode"] == 202, first
    assert json.loads(first["body"])["batch_id"] == "url-batch-1"
    assert again["statusCode"] == 200
    assert json.loads(again["body"])["status"] == "duplicate"


def test_function_url_refuses_bad_signature(aws: dict[str, Any]) -> None:
    """A wrong signature is 401 with the analyzer's error code."""
    body = _batch(shell=False)
    headers = signed_headers(KEY["id"], "a-different-secret-of-length", body, 1)
    event = copy.deepcopy(URL_EVENT)
    event["headers"].update(headers)
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    answer = aws_lambda.function_url_handler(event, Context())
    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"] in ("bad_signature", "stale_timestamp")


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_health_and_unknown_route(aws: dict[str, Any]) -> None:
    """GET /v1/health answers ok; an unknown path is 404."""
    event = copy.deepcopy(URL_EVENT)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/health"
    event["requestContext"]["http"]["method"] = "GET"
    answer = aws_lambda.function_url_handler(event, Context())
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["status"] == "ok"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nope"
    assert aws_lambda.function_url_handler(event, Context())["statusCode"] == 404


def test_wrong_backend_is_a_clear_error(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handlers refuse the SQLite backend, naming the variable and value."""
    monkeypatch.setenv("PALISADE_ANALYZER_BACKEND", "sqlite")
    aws_lambda.reset()
    try:
        with pytest.raises(ValueError, match="PALISADE_ANALYZER_BACKEND=aws"):
            aws_lambda.analyzer()
    finally:
        aws_lambda.reset()


def _template_actions(*resources: str) -> set[str]:
    """Every action the named template resources allow (managed or inline)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load(
        (Path(__file__).resolve().parents[2] / "template.yaml").read_text(),
        Loader=Loader,
    )
    actions: set[str] = set()
    for name in resources:
        props = template["Resources"][name]["Properties"]
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        docs += [props["PolicyDocument"]] if "PolicyDocument" in props else []
        for doc in docs:
            for statement in doc["Statement"]:
                listed = statement["Action"]
                actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def test_ingest_needs_only_what_the_template_grants(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every AWS call the stream handler makes (store, trail, keys, SNS and
    EventBridge alerts) is an action the template's ingest role allows; a
    transaction counts as the item actions IAM checks inside it."""
    from botocore.client import BaseClient

    topic = aws_lambda.os.environ["PALISADE_ANALYZER_SINKS"]
    monkeypatch.setenv("PALISADE_ANALYZER_SINKS", f"{topic},eventbridge:default")
    used: set[str] = set()
    original = BaseClient._make_api_call

    def recording(self: Any, operation: str, params: dict[str, Any]) -> Any:
        prefix = self.meta.service_model.endpoint_prefix
        if operation == "TransactWriteItems":
            used.update(
                f"dynamodb:{_TRANSACT[kind]}"
                for item in params["TransactItems"]
                for kind in item
            )
        else:
            used.add(f"{prefix}:{operation}")
        return original(self, operation, params)

    messages = [_envelope(_batch(shell=False)), _envelope(_batch(shell=True))]
    aws["kinesis"].put_records(
        StreamName="ingest",
        Records=[{"Data": m, "PartitionKey": FUNCTION} for m in messages],
    )
    event = _kinesis_event(aws)
    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    answer = aws_lambda.kinesis_handler(event, Context())
    monkeypatch.setattr(BaseClient, "_make_api_call", original)

    assert answer == {"batchItemFailures": []}
    assert {"sns:Publish", "events:PutEvents", "s3:PutObject"} <= used
    assert any(a.startswith("dynamodb:") for a in used)
    granted = _template_actions("AnalyzerStorePolicy", "StreamIngestRole")
    assert used - granted == set(), sorted(used)
