"""partner_sdk: a small client for the shipping partner's HTTPS API."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


class Client:
    """Talks to ``{base_url}/v1/...`` with a bearer token."""

    def __init__(self, base_url: str, token: str, timeout: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(payload).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as resp:
            result: dict[str, Any] = json.loads(resp.read() or b"{}")
            return result

    def shipment_update(
        self, order_id: str, status: str, customer: str | None = None
    ) -> dict[str, Any]:
        """Tell the partner that ``order_id`` is now ``status``."""
        return self._post(
            "/v1/shipments",
            {"order_id": order_id, "status": status, "customer": customer},
        )
