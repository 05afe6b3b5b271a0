"""The demo's three functions: where their code is, what they need, their traffic."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events
from .attacks import FILE_PROCESSOR, ORDERS_API, PARTNER_NOTIFIER, Step

FUNCTIONS_DIR = Path(__file__).with_name("functions")

INPUT_BUCKET = "demo-uploads-in"
OUTPUT_BUCKET = "demo-processed-out"
ORDERS_TABLE = "demo-orders"


@dataclass
class Resources:
    """What the functions' environment points at."""

    partner_url: str
    hooks_base: str
    ca_bundle: str
    partner_token: str


@dataclass
class FunctionSpec:
    """One demo function."""

    name: str
    title: str
    folder: str
    handler: str
    env: Callable[[Resources], dict[str, str]]
    traffic: Callable[[random.Random, int, Resources], list[Step]]

    @property
    def code_dir(self) -> Path:
        return FUNCTIONS_DIR / self.folder


def _s3_traffic(rng: random.Random, count: int, res: Resources) -> list[Step]:
    return [
        Step(u.event, [(u.bucket, u.key, u.body)])
        for u in events.s3_uploads(rng, INPUT_BUCKET, count)
    ]


def _api_traffic(rng: random.Random, count: int, res: Resources) -> list[Step]:
    return [Step(e) for e in events.OrdersTraffic(rng).take(count)]


def _sqs_traffic(rng: random.Random, count: int, res: Resources) -> list[Step]:
    return [Step(e) for e in events.sqs_batches(rng, count, res.hooks_base)]


SPECS: list[FunctionSpec] = [
    FunctionSpec(
        name=FILE_PROCESSOR,
        title="S3 upload -> `file` + gzip via subprocess -> S3",
        folder="file_processor",
        handler="app.handler",
        env=lambda res: {"OUTPUT_BUCKET": OUTPUT_BUCKET},
        traffic=_s3_traffic,
    ),
    FunctionSpec(
        name=ORDERS_API,
        title="API Gateway REST -> Powertools resolver -> DynamoDB CRUD",
        folder="orders_api",
        handler="app.handler",
        env=lambda res: {
            "TABLE_NAME": ORDERS_TABLE,
            "POWERTOOLS_SERVICE_NAME": "orders-api",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        },
        traffic=_api_traffic,
    ),
    FunctionSpec(
        name=PARTNER_NOTIFIER,
        title="SQS -> partner HTTPS API (+ merchant callbacks)",
        folder="partner_notifier",
        handler="app.handler",
        env=lambda res: {
            "PARTNER_API_URL": res.partner_url,
            "PARTNER_TOKEN": res.partner_token,
        },
        traffic=_sqs_traffic,
    ),
]


def spec(name: str) -> FunctionSpec:
    """The function named ``name``."""
    for item in SPECS:
        if item.name == name:
            return item
    raise KeyError(
        f"unknown function {name!r}; expected one of {[s.name for s in SPECS]}"
    )


def create_resources(endpoint: str) -> None:
    """Create the buckets and the table in moto."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=events.REGION,
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    dynamodb.create_table(
        TableName=ORDERS_TABLE,
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def put_objects(endpoint: str, objects: list[tuple[str, str, bytes]]) -> None:
    """Create S3 objects an event refers to (the upload that triggered it)."""
    if not objects:
        return
    s3 = _s3(endpoint)
    for bucket, key, body in objects:
        s3.put_object(Bucket=bucket, Key=key, Body=body)


_CLIENTS: dict[str, Any] = {}


def _s3(endpoint: str) -> Any:
    if endpoint not in _CLIENTS:
        import boto3

        _CLIENTS[endpoint] = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=events.REGION,
        ).client("s3", endpoint_url=endpoint)
    return _CLIENTS[endpoint]
