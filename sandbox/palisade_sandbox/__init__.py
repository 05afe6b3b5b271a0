"""Palisade's local Lambda sandbox: Runtime, Extensions and Telemetry APIs on
loopback, the real ``awslambdaric`` client, extensions beside it, moto for AWS.

    from palisade_sandbox import Sandbox

    with Sandbox("app.handler", code_dir="src") as box:
        result = box.invoke({"id": 1})
        result.status, result.payload
"""

from __future__ import annotations

from .aws import MotoEndpoint
from .layout import Layout, build_layout
from .sandbox import InvocationResult, RequestTooLargeError, Sandbox, SandboxError

__all__ = [
    "InvocationResult",
    "Layout",
    "MotoEndpoint",
    "RequestTooLargeError",
    "Sandbox",
    "SandboxError",
    "build_layout",
]
