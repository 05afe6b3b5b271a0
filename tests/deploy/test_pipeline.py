"""The deployed pipeline, on one machine: protected function → Kinesis → analyzer.

A function runs in the sandbox with the built layer as /opt and the settings the
template gives the sample function (Kinesis sink, signing key, block mode). Its
extension puts signed envelopes on a moto Kinesis stream; those records, read back
with GetRecords, go to the analyzer's ``kinesis_handler``, which stores them in
DynamoDB and S3 and publishes the blocked shell as an alert on SNS, received by an
SQS queue subscribed to the topic.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy_support import SANDBOX_LAYER_MARKS, build_opt, kinesis_event

REGION = "us-east-1"
FUNCTION = "checkout"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/ingest"
KEY = {"id": "pipeline", "secret": "pipeline-signing-secret-0123", "functions": ["*"]}

pytestmark = SANDBOX_LAYER_MARKS
sandbox = pytest.importorskip(
    "palisade_sandbox", reason="the local sandbox is not in this checkout yet"
)

APP = textwrap.dedent(
    '''
    import os


    def handler(event, context):
        """Try a shell; answer whether it ran."""
        try:
            os.system("id")
            return {"shell": "ran"}
        except PermissionError:
            return {"shell": "blocked"}
    '''
)


@dataclass
class Context:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "palisade-ingest-stream"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:palisade-ingest-stream"
    )
    aws_request_id: str = "0d9b7a54-1f7e-4c38-9a52-5c0c3c6b2f11"


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server; this process's boto3 clients are pointed at it."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    with sandbox.MotoEndpoint() as endpoint:
        assert endpoint.url is not None
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint.url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            monkeypatch.setenv(key, value)
        yield endpoint.url


@pytest.fixture
def analyzer_env(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The analyzer's resources on moto and the handler's settings."""
    from palisade_analyzer import aws_lambda
    from palisade_analyzer.aws_store import AWSStore

    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="ingest", ShardCount=1)
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    sqs = boto3.client("sqs")
    inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    secret = boto3.client("secretsmanager").create_secret(
        Name="keys", SecretString=json.dumps(KEY)
    )["ARN"]
    store = AWSStore(table_prefix="pipe-", bucket="trail")
    store.create_tables()
    for key, value in {
        "PALISADE_ANALYZER_BACKEND": "aws",
        "PALISADE_ANALYZER_TABLE_PREFIX": "pipe-",
        "PALISADE_ANALYZER_BUCKET": "trail",
        "PALISADE_ANALYZER_SINKS": f"sns:{topic}",
        "PALISADE_ANALYZER_KEYS_SECRET": secret,
    }.items():
        monkeypatch.setenv(key, value)
    aws_lambda.reset()
    try:
        yield {"kinesis": kinesis, "sqs": sqs, "inbox": inbox, "store": store}
    finally:
        aws_lambda.reset()


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built for this machine, unpacked as /opt."""
    return build_opt(tmp_path_factory)


def _stream_event(kinesis: Any) -> dict[str, Any]:
    return kinesis_event(kinesis, STREAM_ARN, REGION)


def test_blocked_shell_becomes_an_alert_through_the_stream(
    opt: Path, moto_url: str, analyzer_env: dict[str, Any], tmp_path: Path
) -> None:
    """Function blocks a shell → signed batch on Kinesis → stored → SNS alert."""
    from palisade_analyzer import aws_lambda

    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": str(opt / "palisade-exec-wrapper"),
        "PALISADE_MODE": "block",
        "PALISADE_SINK": "kinesis",
        "PALISADE_STREAM_NAME": "ingest",
        "PALISADE_ANALYZER_KEY": f"{KEY['id']}:{KEY['secret']}",
    }
    with sandbox.Sandbox(
        "app.handler",
        code_dir=code,
        opt_dir=opt,
        env=env,
        aws_endpoint=moto_url,
        function_name=FUNCTION,
        timeout=10,
    ) as box:
        result = box.invoke({"order": 1})
        assert result.ok, (result.status, result.error, result.logs)
        assert result.payload == {"shell": "blocked"}

    event = _stream_event(analyzer_env["kinesis"])
    assert event["Records"], "the extension put nothing on the stream"
    answer = aws_lambda.kinesis_handler(event, Context())

    assert answer == {"batchItemFailures": []}
    store = analyzer_env["store"]
    stats = store.stats()
    assert stats.get("batches.stored", 0) >= 1, stats
    assert FUNCTION in store.functions()
    messages = (
        analyzer_env["sqs"]
        .receive_message(QueueUrl=analyzer_env["inbox"], MaxNumberOfMessages=10)
        .get("Messages", [])
    )
    alerts = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
    assert any(a["function"] == FUNCTION for a in alerts), alerts
    assert any("/bin/sh" in json.dumps(a) for a in alerts), alerts
