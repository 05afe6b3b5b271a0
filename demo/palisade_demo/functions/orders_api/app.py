"""Orders REST API behind API Gateway: DynamoDB CRUD with Powertools.

Routes: ``GET /orders``, ``POST /orders``, ``GET|PUT|DELETE /orders/<id>``, and
``POST /exports`` (writes a named CSV report of the orders to /tmp) plus
``GET /exports?name=`` to download one.

Known weakness, kept on purpose for the demo: the export download joins the
``name`` query parameter to the export folder without checking it, so
``/proc/self/environ`` (an absolute path replaces the folder in ``os.path.join``)
returns the function's environment (path traversal).
"""

from __future__ import annotations

import csv
import os
import uuid
from decimal import Decimal
from typing import Any

import boto3
import orders_common
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import (
    BadRequestError,
    NotFoundError,
)

EXPORT_DIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), "exports")

logger = Logger(service="orders-api")
app = APIGatewayRestResolver()
table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in item.items()}


@app.get("/orders")
def list_orders() -> dict[str, Any]:
    items = table.scan(Limit=50).get("Items", [])
    return {"orders": [_plain(i) for i in items]}


@app.post("/orders")
def create_order() -> Response:
    body = app.current_event.json_body or {}
    try:
        order = orders_common.normalize(body)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from exc
    order["order_id"] = order.get("order_id") or uuid.uuid4().hex[:12]
    table.put_item(Item=order)
    logger.info("order created", extra={"order_id": order["order_id"]})
    return Response(
        status_code=201, content_type="application/json", body=_plain(order)
    )


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict[str, Any]:
    item = table.get_item(Key={"order_id": order_id}).get("Item")
    if item is None:
        raise NotFoundError(f"order {order_id} not found")
    return _plain(item)


@app.put("/orders/<order_id>")
def update_order(order_id: str) -> dict[str, Any]:
    status = (app.current_event.json_body or {}).get("status")
    if status not in orders_common.STATUSES:
        raise BadRequestError(f"status must be one of {sorted(orders_common.STATUSES)}")
    result = table.update_item(
        Key={"order_id": order_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": status},
        ReturnValues="ALL_NEW",
    )
    return _plain(result["Attributes"])


@app.delete("/orders/<order_id>")
def delete_order(order_id: str) -> Response:
    table.delete_item(Key={"order_id": order_id})
    return Response(status_code=204, content_type="application/json", body="")


@app.post("/exports")
def create_export() -> dict[str, Any]:
    report = str((app.current_event.json_body or {}).get("report", "orders"))
    if not report.replace("-", "").isalnum():
        raise BadRequestError("report must contain only letters, digits and '-'")
    os.makedirs(EXPORT_DIR, exist_ok=True)
    name = f"{report}.csv"
    items = table.scan(Limit=100).get("Items", [])
    with open(os.path.join(EXPORT_DIR, name), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["order_id", "customer", "status", "total"])
        for item in items:
            fields = ("order_id", "customer", "status", "total")
            writer.writerow([item.get(k, "") for k in fields])
    return {"export": name, "rows": len(items)}


@app.get("/exports")
def download_export() -> Response:
    name = app.current_event.get_query_string_value("name", "")
    # The bug: no check that the joined path stays inside EXPORT_DIR.
    path = os.path.join(EXPORT_DIR, name)
    try:
        with open(path, errors="replace") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise NotFoundError(f"export {name} not found") from exc
    return Response(status_code=200, content_type="text/csv", body=data)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
