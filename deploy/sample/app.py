"""A sample protected function: it lists a bucket-like prefix of /tmp and answers.

Deployed by template.yaml with the Palisade layer attached; nothing in this file
knows about Palisade, which is the point.
"""

from __future__ import annotations

import json
import os
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write the event under /tmp, read it back and answer with its size."""
    path = os.path.join("/tmp", "last-event.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(event, handle)
    with open(path, encoding="utf-8") as handle:
        size = len(handle.read())
    return {"statusCode": 200, "body": json.dumps({"bytes": size})}
