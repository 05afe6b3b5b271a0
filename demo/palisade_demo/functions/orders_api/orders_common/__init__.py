"""orders_common: validation shared by the order services."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

STATUSES = frozenset({"new", "paid", "packed", "shipped", "delivered", "cancelled"})


def normalize(body: dict[str, Any]) -> dict[str, Any]:
    """Return a clean order item, or raise ValueError naming the bad field."""
    customer = str(body.get("customer", "")).strip()
    if not customer:
        raise ValueError("customer is required")
    items = body.get("items") or []
    if not isinstance(items, list) or not items:
        raise ValueError("items must be a non-empty list")
    total = sum(Decimal(str(i.get("price", 0))) * int(i.get("qty", 1)) for i in items)
    order: dict[str, Any] = {
        "customer": customer,
        "status": body.get("status", "new")
        if body.get("status") in STATUSES
        else "new",
        "items": [
            {"sku": str(i.get("sku")), "qty": int(i.get("qty", 1))} for i in items
        ],
        "total": total,
    }
    if body.get("order_id"):
        order["order_id"] = str(body["order_id"])
    return order
