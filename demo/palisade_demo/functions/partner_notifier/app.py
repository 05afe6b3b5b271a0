"""SQS consumer: tell the shipping partner about each order update.

Each message body is JSON ``{"order_id", "status", "customer", "callback_url"?}``.
The function posts a shipment update to the partner API (PARTNER_API_URL, bearer
PARTNER_TOKEN) and, when the message names one, notifies the merchant's callback
URL with the partner's answer. Failed messages are reported back to SQS as partial
batch failures.

Known weakness, kept on purpose for the demo: ``callback_url`` comes from the message
and is fetched without any check (server-side request forgery).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import partner_sdk

client = partner_sdk.Client(os.environ["PARTNER_API_URL"], os.environ["PARTNER_TOKEN"])


def _notify(url: str, payload: dict[str, Any]) -> str:
    data = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return f"{resp.status} {resp.read(4096).decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read(4096).decode(errors='replace')}"


def _handle(body: dict[str, Any]) -> dict[str, Any]:
    answer = client.shipment_update(
        body["order_id"], body["status"], body.get("customer")
    )
    result: dict[str, Any] = {"order_id": body["order_id"], "partner": answer}
    if body.get("callback_url"):
        result["callback"] = _notify(
            body["callback_url"], {"order": body, "partner": answer}
        )
    return result


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    results: list[dict[str, Any]] = []
    for record in event.get("Records", []):
        try:
            results.append(_handle(json.loads(record["body"])))
        except Exception as exc:  # one bad message must not fail the whole batch
            results.append({"message_id": record["messageId"], "error": repr(exc)})
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures, "results": results}
