"""S3-triggered file processor: describe each uploaded object and store a gzip copy.

For every object in the notification it downloads the file to /tmp (TMPDIR), asks the
``docmeta`` helper what it is (the ``file`` tool), compresses it with ``gzip`` and
uploads the result under ``processed/`` in OUTPUT_BUCKET with the type and digest as
object metadata.

Known weakness, kept on purpose for the demo: uploaded ``.gz`` archives are measured
with a shell pipeline built from the object key, so a key containing shell syntax
runs commands (command injection).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.parse
from typing import Any

import boto3
import docmeta

WORK_DIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), "work")
OUTPUT_BUCKET = os.environ["OUTPUT_BUCKET"]

s3 = boto3.client("s3")


def _expanded_size(local: str) -> int:
    # The bug: the path (derived from the key) is pasted into a shell command.
    out = subprocess.run(
        f"gzip -dc '{local}' | wc -c", shell=True, capture_output=True, timeout=10
    )
    return int(out.stdout.strip() or 0)


def _compress(local: str) -> str:
    subprocess.run(["gzip", "-9", "-f", "-k", local], check=True, timeout=10)
    return local + ".gz"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(65536), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _process(bucket: str, key: str) -> dict[str, Any]:
    os.makedirs(WORK_DIR, exist_ok=True)
    local = os.path.join(WORK_DIR, os.path.basename(key))
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(local, "wb") as fh:
        for chunk in body.iter_chunks(65536):
            fh.write(chunk)
    try:
        kind = docmeta.describe(local)
        result: dict[str, Any] = {"key": key, "type": kind, "sha256": _sha256(local)}
        if key.endswith(".gz"):
            result["expanded_bytes"] = _expanded_size(local)
            target = local
        else:
            target = _compress(local)
        out_key = f"processed/{key}" if key.endswith(".gz") else f"processed/{key}.gz"
        with open(target, "rb") as fh:
            s3.put_object(
                Bucket=OUTPUT_BUCKET,
                Key=out_key,
                Body=fh,
                Metadata={"type": kind, "sha256": result["sha256"]},
            )
        result["output"] = f"s3://{OUTPUT_BUCKET}/{out_key}"
        if target != local:
            os.remove(target)
        return result
    finally:
        if os.path.exists(local):
            os.remove(local)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processed = []
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        processed.append(_process(bucket, key))
    return {"processed": processed}
