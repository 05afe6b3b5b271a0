"""Shared pieces of the deployment tests: the host's layer build and Kinesis events."""

from __future__ import annotations

import base64
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WHEEL_CACHE = REPO / "build" / "layer-cache"
HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), "")

# The marks of a test that runs a function in the sandbox with the built layer.
SANDBOX_LAYER_MARKS = [
    pytest.mark.slow,
    pytest.mark.aws,
    pytest.mark.skipif(not HOST_ARCH, reason="layer targets x86_64 and arm64 only"),
]


def build_opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built for this machine, unpacked as /opt."""
    from palisade_cli import layer

    result = layer.build_layer(
        arch=HOST_ARCH,
        python=HOST_PYTHON,
        out=tmp_path_factory.mktemp("dist"),
        cache=WHEEL_CACHE,
    )
    target = tmp_path_factory.mktemp("opt")
    layer.extract(result.path, target)
    return target


def kinesis_event(kinesis: Any, stream_arn: str, region: str) -> dict[str, Any]:
    """What Lambda's event source mapping delivers, from GetRecords on ``ingest``."""
    shard = kinesis.list_shards(StreamName="ingest")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="ingest", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=100)["Records"]
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r[
                        "ApproximateArrivalTimestamp"
                    ].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/ingest",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }
