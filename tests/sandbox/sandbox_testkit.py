"""Helpers shared by the sandbox tests (imported by conftest and test modules)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

PROBE = Path(__file__).with_name("extensions") / "probe"

APP = """
import json
import os
import signal
import time

LOADED_AT = time.time()


def handler(event, context):
    action = event.get("action") if isinstance(event, dict) else None
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise ValueError(event.get("message", "boom"))
    elif action == "exit":
        os._exit(3)
    elif action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "big":
        return "x" * (7 * 1024 * 1024)
    elif action == "env":
        return dict(os.environ)
    elif action == "context":
        return {
            "request_id": context.aws_request_id,
            "arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": getattr(context.client_context, "custom", None),
            "memory": context.memory_limit_in_mb,
            "name": context.function_name,
        }
    elif action == "paths":
        import sys
        return {"sys_path": sys.path, "cwd": os.getcwd(), "pid": os.getpid()}
    elif action == "spawn":
        import subprocess
        child = subprocess.Popen(["sleep", "30"])
        return {"pid": child.pid}
    elif action == "print":
        print(event["text"])
        return None
    elif action == "dynamodb":
        import boto3
        client = boto3.client("dynamodb")
        table = event["table"]
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName=table, Item={"id": {"S": "1"}, "v": {"S": "hello"}})
        item = client.get_item(TableName=table, Key={"id": {"S": "1"}})["Item"]
        return {"v": item["v"]["S"], "endpoint": client.meta.endpoint_url}
    return {"echo": event, "loaded_at": LOADED_AT}
"""


def write_code(folder: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> source) into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (folder / name).write_text(textwrap.dedent(source))
    return folder


def read_probe(out: Path, name: str = "probe") -> list[dict[str, Any]]:
    """The probe's records, in order."""
    path = out / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]
