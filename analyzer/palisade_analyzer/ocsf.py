"""Alerts and trail events in OCSF (Open Cybersecurity Schema Framework) 1.1.

An alert becomes a Detection Finding (class 2004, category 2 Findings); the
events in its evidence become File System Activity (1001), Process Activity
(1007) or Network Activity (4001) objects (category 1 System Activity, 4 Network
Activity). ``type_uid`` is ``class_uid * 100 + activity_id`` and ``severity_id``
is 1 informational .. 5 critical, as the framework defines them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import SEVERITIES, Alert

OCSF_VERSION = "1.1.0"
PRODUCT = {
    "name": "Palisade",
    "vendor_name": "Palisade",
    "feature": {"name": "analyzer"},
}

# severity name -> OCSF severity_id
SEVERITY_IDS = {name: i + 1 for i, name in enumerate(SEVERITIES)}

FILE_ACTIVITY = {
    "create": (1, "Create"),
    "mkdir": (1, "Create"),
    "link": (1, "Create"),
    "read": (2, "Read"),
    "list": (2, "Read"),
    "write": (3, "Update"),
    "truncate": (3, "Update"),
    "delete": (4, "Delete"),
    "rename": (5, "Rename"),
    "chmod": (7, "Set Security"),
    "chown": (7, "Set Security"),
}
PROCESS_ACTIVITY = {"kill": (2, "Terminate")}
NETWORK_ACTIVITY = {
    "connect": (1, "Open"),
    "sendto": (6, "Traffic"),
    "bind": (7, "Listen"),
    "listen": (7, "Listen"),
}


def _base(
    class_uid: int,
    class_name: str,
    category_uid: int,
    category: str,
    activity: tuple[int, str],
    time_s: float,
) -> dict[str, Any]:
    activity_id, activity_name = activity
    return {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": int(time_s * 1000),
        "metadata": {"version": OCSF_VERSION, "product": PRODUCT},
    }


def event_to_ocsf(
    event: Mapping[str, Any], function: str, severity: str = "info"
) -> dict[str, Any] | None:
    """One trail event as an OCSF activity object, or None for other kinds."""
    kind, op, ts = event["kind"], event["op"], float(event["ts"])
    detail = event.get("detail") or {}
    actor = {"app_name": function, "process": {"name": event.get("module", "")}}
    if kind == "file":
        out = _base(
            1001,
            "File System Activity",
            1,
            "System Activity",
            FILE_ACTIVITY.get(op, (99, "Other")),
            ts,
        )
        path = event["target"]
        out["file"] = {"path": path, "name": path.rsplit("/", 1)[-1], "type_id": 1}
    elif kind == "process":
        out = _base(
            1007,
            "Process Activity",
            1,
            "System Activity",
            PROCESS_ACTIVITY.get(op, (1, "Launch")),
            ts,
        )
        argv = detail.get("argv")
        out["process"] = {
            "file": {
                "path": event["target"],
                "name": event["target"].rsplit("/", 1)[-1],
            },
            "cmd_line": " ".join(str(a) for a in argv)
            if isinstance(argv, list)
            else "",
        }
    elif kind == "network":
        out = _base(
            4001,
            "Network Activity",
            4,
            "Network Activity",
            NETWORK_ACTIVITY.get(op, (99, "Other")),
            ts,
        )
        host, _, port = event["target"].rpartition(":")
        endpoint: dict[str, Any] = {"hostname": detail.get("resolved_from") or host}
        if detail.get("ip"):
            endpoint["ip"] = detail["ip"]
        if port.isdigit():
            endpoint["port"] = int(port)
        out["dst_endpoint"] = endpoint
        out["connection_info"] = {"protocol_name": detail.get("protocol", "tcp")}
    else:
        return None
    out["actor"] = actor
    out["severity_id"] = SEVERITY_IDS.get(severity, 1)
    out["severity"] = severity.capitalize()
    out["status_id"] = {"allowed": 1, "alerted": 1, "blocked": 2}.get(
        str(event.get("verdict")), 0
    )
    out["disposition"] = {
        "allowed": "Allowed",
        "alerted": "Alert",
        "blocked": "Blocked",
    }.get(str(event.get("verdict")), "Unknown")
    out["unmapped"] = {
        "request_id": event.get("request_id"),
        "rule": event.get("rule"),
        "kind": kind,
        "op": op,
    }
    return out


def alert_to_ocsf(alert: Alert, new: bool = True) -> dict[str, Any]:
    """An alert as an OCSF Detection Finding (2004)."""
    activity = (1, "Create") if new else (2, "Update")
    out = _base(2004, "Detection Finding", 2, "Findings", activity, alert.last_seen)
    out["severity_id"] = SEVERITY_IDS[alert.severity]
    out["severity"] = alert.severity.capitalize()
    out["status_id"] = 1
    out["status"] = "New"
    out["count"] = alert.count
    out["message"] = f"{alert.function} {alert.version}: {alert.signature}"
    out["finding_info"] = {
        "uid": alert.id,
        "title": f"Unexpected behaviour in {alert.function}: {alert.signature}",
        "desc": "; ".join(alert.reasons),
        "types": [alert.kind, alert.sensitivity, alert.newness],
        "first_seen_time": int(alert.first_seen * 1000),
        "last_seen_time": int(alert.last_seen * 1000),
        "analytic": {"name": "palisade-profile", "type_id": 5, "type": "Behavioral"},
    }
    out["resources"] = [
        {
            "type": "AWS::Lambda::Function",
            "name": alert.function,
            "version": alert.version,
        }
    ]
    activities = []
    for item in alert.evidence:
        if "op" in item:
            event = {**item, "kind": alert.kind, "detail": {"argv": item.get("argv")}}
            converted = event_to_ocsf(event, alert.function, alert.severity)
            if converted is not None:
                activities.append(converted)
    out["evidences"] = [{"data": item} for item in alert.evidence]
    out["unmapped"] = {"palisade": alert.to_json(), "activities": activities}
    return out
