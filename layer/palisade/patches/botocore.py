"""AWS API calls made through botocore (and so boto3).

``BaseClient._make_api_call`` is wrapped when, and only if, the function imports
``botocore.client``: Palisade never imports botocore itself, so the function's
own copy is the one patched. Each call becomes one ``aws:call`` event, decided
before any request is signed or sent; while an allowed call runs, network and
DNS events carry ``detail["aws_endpoint"]`` (the client's endpoint host), which
the engine allows by rule ``aws-endpoint``.

Limitation: the endpoint is the client's configured one; S3 virtual-host names
(``bucket.s3...``) and redirects to other regions differ from it and are decided
on their own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import wrapt

from .. import hook

_applied = False
_registered = False

#: parameters naming the resource an operation acts on, most specific first
RESOURCE_PARAMS = (
    "TableName",
    "Bucket",
    "QueueUrl",
    "QueueName",
    "FunctionName",
    "SecretId",
    "StreamName",
    "StreamARN",
    "DeliveryStreamName",
    "TopicArn",
    "TargetArn",
    "StateMachineArn",
    "EventBusName",
    "LogGroupName",
    "KeyId",
    "RoleArn",
    "Name",
    "Names",
)


def resource_of(params: object) -> str | None:
    """The main resource named in an operation's parameters, if any."""
    if not isinstance(params, dict):
        return None
    for key in RESOURCE_PARAMS:
        value = params.get(key)
        if value is None:
            continue
        if key == "Bucket" and isinstance(params.get("Key"), str):
            return f"{value}/{params['Key']}"
        if key == "QueueUrl" and isinstance(value, str):
            return value.rstrip("/").rpartition("/")[2] or value
        if isinstance(value, list):
            return ",".join(str(item) for item in value[:5])
        return str(value)
    return None


def _before(client: Any, operation: object, params: object) -> str | None:
    meta = client.meta
    service = meta.service_model.service_name
    endpoint_url = getattr(meta, "endpoint_url", None) or ""
    host = urlsplit(endpoint_url).hostname if endpoint_url else None
    resource = resource_of(params)
    target = f"{service}:{operation}" + (f":{resource}" if resource else "")
    detail = {
        "service": service,
        "operation": str(operation),
        "resource": resource,
        "region": getattr(meta, "region_name", None),
        "endpoint": host,
    }
    hook.observe("aws", "call", target, detail)
    return host


def _make_api_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    operation = args[0] if args else kwargs.get("operation_name")
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    host = hook.guarded(_before, instance, operation, params)
    if host is None:
        return wrapped(*args, **kwargs)
    token = hook.aws_endpoint.set(host)
    try:
        return wrapped(*args, **kwargs)
    finally:
        hook.aws_endpoint.reset(token)


def _patch(module: Any) -> None:
    global _applied
    if _applied:
        return
    wrapt.wrap_function_wrapper(module, "BaseClient._make_api_call", _make_api_call)
    _applied = True


def apply() -> bool:
    """Register the patch for when botocore.client is imported (now, if it is)."""
    global _registered
    if _registered:
        return False
    wrapt.register_post_import_hook(_patch, "botocore.client")
    _registered = True
    return True
