"""How the peer, Aikido Zen, is configured wherever the benchmarks run it.

One definition, imported by the child processes (this folder is their script
folder) and copied next to the handler in sandboxed functions.

Configuration, read from the installed package (``aikido_zen`` 1.2.x):

- ``AIKIDO_BLOCK=true``: attacks Zen detects raise instead of being reported only
  (``helpers/check_env_for_blocking.py``).
- ``AIKIDO_TMP_DIR``: where Zen checks it may create its IPC socket.
- No ``AIKIDO_TOKEN``: Zen then starts no background process and talks to no
  cloud (``background_process/__init__.py``); everything below is local.
- ``aikido_zen.protect()`` before the function's modules are imported: it
  registers its wrapt import hooks and patches (open, os, pathlib, shutil,
  socket.getaddrinfo, subprocess, os.system, http.client, botocore, sqlite3...).
- Outbound domains: Zen takes this list from its cloud, so it is set here the way
  the cloud's answer would set it: every host the function legitimately reaches is
  ``allow`` and ``block_new_outgoing_requests`` is on, so any other host name is
  refused (``background_process/service_config.py``). Zen checks the name after
  ``getaddrinfo`` has resolved it (``sinks/socket``).
- Request context: ``aikido_zen.aws_lambda.protect`` is a no-op in this version,
  and shell-injection and path-traversal detection only compare operations with
  user input held in Zen's request context, so each invocation sets a
  ``Context`` built from the Lambda event: method, URL, headers, query, body and
  source IP of an API Gateway event; the whole event as the body otherwise
  (with the S3 uploader's address, or 0.0.0.0, as the client address).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

ALLOWED_HOSTS = ("localhost", "127.0.0.1")
# Zen needs a client address string (its bypass-list check fails on None); an
# event from an AWS service has no client, so this placeholder stands for it.
_NO_CLIENT = "0.0.0.0"


def _source_ip(event: Any) -> str:
    """The uploader's address of an S3 notification, else the placeholder."""
    try:
        ip = event["Records"][0]["requestParameters"]["sourceIPAddress"]
    except (KeyError, IndexError, TypeError):
        return _NO_CLIENT
    return ip if isinstance(ip, str) and ip else _NO_CLIENT


def protect(allowed_hosts: tuple[str, ...] = ALLOWED_HOSTS) -> None:
    """Start Zen in blocking mode with an outbound allowlist of ``allowed_hosts``."""
    os.environ.setdefault("AIKIDO_BLOCK", "true")
    import aikido_zen
    from aikido_zen.thread.thread_cache import get_cache

    aikido_zen.protect()
    config = get_cache().config
    config.update_outbound_domains(
        [{"hostname": host, "mode": "allow"} for host in allowed_hosts]
    )
    config.set_block_new_outgoing_requests(True)


def set_context(event: Any, function: str = "bench") -> None:
    """Make ``event`` the current request's user input for Zen's detectors."""
    from aikido_zen.context import Context
    from aikido_zen.helpers.build_route_from_url import build_route_from_url

    if isinstance(event, dict) and "httpMethod" in event:
        headers = event.get("headers") or {}
        body = event.get("body")
        if isinstance(body, str):
            with contextlib.suppress(ValueError):
                body = json.loads(body)
        ctx = Context(body=body, source="lambda")
        query = event.get("multiValueQueryStringParameters") or {}
        path = event.get("path") or "/"
        ctx.method = event["httpMethod"]
        ctx.url = f"https://{headers.get('Host', 'api.local')}{path}"
        ctx.query = dict(query)
        for key, value in headers.items():
            ctx.headers.store_header(key, str(value))
        identity = (event.get("requestContext") or {}).get("identity") or {}
        ctx.remote_address = identity.get("sourceIp") or _NO_CLIENT
    else:
        ctx = Context(body=event, source="lambda")
        ctx.method = "POST"
        ctx.url = f"https://lambda.local/{function}"
        ctx.remote_address = _source_ip(event)
    ctx.route = build_route_from_url(ctx.url)
    ctx.set_as_current_context()
