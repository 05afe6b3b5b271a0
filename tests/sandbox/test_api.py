"""Conformance of the Runtime, Extensions and Telemetry APIs: status codes,
headers and error bodies, driven over HTTP without any function process."""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from palisade_sandbox import Sandbox
from palisade_sandbox.platform import Invocation
from palisade_sandbox.sandbox import _trace_id

EXT = "2020-01-01/extension"
RT = "2018-06-01/runtime"


class Api:
    """A tiny HTTP client for the sandbox's API."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        host, port = box.api_address.split(":")
        self.host, self.port = host, int(port)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        data = (
            raw
            if raw is not None
            else (json.dumps(body).encode() if body is not None else None)
        )
        conn.request(method, "/" + path, body=data, headers=headers or {})
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        try:
            decoded: Any = json.loads(payload)
        except ValueError:
            decoded = payload.decode()
        return resp.status, dict(resp.headers), decoded

    def register(self, name: str, events: list[str] | None = None) -> str:
        status, headers, body = self.call(
            "POST",
            f"{EXT}/register",
            {"events": events or ["INVOKE"]},
            {"Lambda-Extension-Name": name},
        )
        assert status == 200, body
        return headers["Lambda-Extension-Identifier"]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """A started sandbox in its init phase, with one external extension file
    named ``ext``; no process runs."""
    ext = tmp_path / "ext"
    ext.write_text("#!/bin/sh\nexit 0\n")
    ext.chmod(0o755)
    box = Sandbox("app.handler", moto=False, extensions=[ext])
    box.start()
    assert box.platform is not None
    box.platform.begin_init()
    try:
        yield Api(box)
    finally:
        box.shutdown()


def error_type(body: Any) -> str:
    assert set(body) == {"errorMessage", "errorType"}, body
    return str(body["errorType"])


# ------------------------------------------------------------------ Extensions


def test_register_returns_identifier_and_function_metadata(api: Api) -> None:
    """Register answers 200 with a UUID identifier and the function's metadata;
    accountId only when the feature is asked for."""
    status, headers, body = api.call(
        "POST",
        f"{EXT}/register",
        {"events": ["INVOKE", "SHUTDOWN"]},
        {
            "Lambda-Extension-Name": "ext",
            "Lambda-Extension-Accept-Feature": "accountId",
        },
    )
    assert status == 200
    uuid.UUID(headers["Lambda-Extension-Identifier"])
    assert body == {
        "functionName": "palisade-sandbox",
        "functionVersion": "$LATEST",
        "handler": "app.handler",
        "accountId": "123456789012",
    }


@pytest.mark.parametrize(
    ("headers", "raw", "expected"),
    [
        ({}, b'{"events": []}', "Extension.InvalidExtensionName"),
        ({"Lambda-Extension-Name": "ext"}, b"{not json", "InvalidRequestFormat"),
        (
            {"Lambda-Extension-Name": "ext"},
            b'{"events": ["BOOT"]}',
            "Extension.InvalidEventType",
        ),
        # An internal extension (no file of that name) may not take SHUTDOWN.
        (
            {"Lambda-Extension-Name": "inside"},
            b'{"events": ["SHUTDOWN"]}',
            "Extension.InvalidEventType",
        ),
    ],
)
def test_register_refusals(
    api: Api, headers: dict[str, str], raw: bytes, expected: str
) -> None:
    """Bad register requests get 403 with the documented error type."""
    status, _, body = api.call("POST", f"{EXT}/register", headers=headers, raw=raw)
    assert status == 403
    assert error_type(body) == expected


def test_register_twice_and_limit_of_ten(api: Api) -> None:
    """A name registers once; the eleventh extension is refused."""
    api.register("ext")
    status, _, body = api.call(
        "POST", f"{EXT}/register", {}, {"Lambda-Extension-Name": "ext"}
    )
    assert status == 403 and error_type(body) == "Extension.InvalidExtensionState"
    for i in range(9):
        api.register(f"internal-{i}")
    status, _, body = api.call(
        "POST", f"{EXT}/register", {}, {"Lambda-Extension-Name": "one-too-many"}
    )
    assert status == 403 and error_type(body) == "Extension.TooManyExtensions"


def test_register_after_init_is_closed(api: Api) -> None:
    """Registration closes with the init phase."""
    assert api.box.platform is not None
    api.box.platform.end_init()
    status, _, body = api.call(
        "POST", f"{EXT}/register", {}, {"Lambda-Extension-Name": "ext"}
    )
    assert status == 403 and error_type(body) == "Extension.RegistrationClosed"


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        (None, "Extension.MissingExtensionIdentifier"),
        ("not-a-uuid", "Extension.InvalidExtensionIdentifier"),
        (str(uuid.uuid4()), "Extension.UnknownExtensionIdentifier"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{EXT}/event/next"),
        ("POST", f"{EXT}/init/error"),
        ("POST", f"{EXT}/exit/error"),
        ("PUT", "2022-07-01/telemetry"),
    ],
)
def test_identifier_checks(
    api: Api, ident: str | None, expected: str, method: str, path: str
) -> None:
    """Calls without a valid, known identifier get 403 and say which it was."""
    headers = {"Lambda-Extension-Identifier": ident} if ident else {}
    headers["Lambda-Extension-Function-Error-Type"] = "X.Y"
    status, _, body = api.call(method, path, {}, headers)
    assert status == 403
    assert error_type(body) == expected


def test_error_endpoints(api: Api) -> None:
    """init/error and exit/error need the error-type header (400 without) and
    answer 202; a later next is refused."""
    ident = api.register("ext")
    status, _, body = api.call(
        "POST",
        f"{EXT}/init/error",
        {"errorMessage": "x"},
        {"Lambda-Extension-Identifier": ident},
    )
    assert status == 400 and error_type(body) == "Extension.MissingHeader"
    status, _, body = api.call(
        "POST",
        f"{EXT}/exit/error",
        {"errorMessage": "x"},
        {
            "Lambda-Extension-Identifier": ident,
            "Lambda-Extension-Function-Error-Type": "Extension.Bad",
        },
    )
    assert status == 202 and body == {"status": "OK"}
    status, _, body = api.call(
        "GET", f"{EXT}/event/next", headers={"Lambda-Extension-Identifier": ident}
    )
    assert status == 403 and error_type(body) == "Extension.InvalidExtensionState"


def test_extension_next_delivers_invoke_event(api: Api) -> None:
    """A blocked extension next returns the INVOKE event with its fields."""
    ident = api.register("ext")
    platform = api.box.platform
    assert platform is not None
    got: list[Any] = []
    thread = threading.Thread(
        target=lambda: got.append(
            api.call(
                "GET",
                f"{EXT}/event/next",
                headers={"Lambda-Extension-Identifier": ident},
            )
        )
    )
    thread.start()
    assert platform.wait_for(platform.all_extensions_ready, 5)
    platform.end_init()
    platform.start_invocation(Invocation("req-1", b"{}", 1234, "arn:fn", "Root=1-abc"))
    thread.join(5)
    status, headers, body = got[0]
    assert status == 200
    assert "Lambda-Extension-Event-Identifier" in headers
    assert body == {
        "eventType": "INVOKE",
        "deadlineMs": 1234,
        "requestId": "req-1",
        "invokedFunctionArn": "arn:fn",
        "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-abc"},
    }


# --------------------------------------------------------------------- Runtime


def start_invoke(
    api: Api, request_id: str = "req-1"
) -> tuple[int, dict[str, str], Any]:
    platform = api.box.platform
    assert platform is not None
    platform.end_init()
    platform.start_invocation(
        Invocation(
            request_id,
            b'{"k": 1}',
            99,
            "arn:fn",
            _trace_id(),
            client_context='{"custom": {}}',
        )
    )
    return api.call("GET", f"{RT}/invocation/next")


def test_runtime_next_headers(api: Api) -> None:
    """invocation/next returns the event and Lambda's headers."""
    status, headers, body = start_invoke(api)
    assert status == 200 and body == {"k": 1}
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert headers["Lambda-Runtime-Deadline-Ms"] == "99"
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == "arn:fn"
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert headers["Lambda-Runtime-Client-Context"] == '{"custom": {}}'
    assert "Lambda-Runtime-Cognito-Identity" not in headers


def test_runtime_response_and_unknown_ids(api: Api) -> None:
    """response answers 202 once; an unknown or already answered id is 400
    InvalidRequestID."""
    start_invoke(api)
    status, _, body = api.call("POST", f"{RT}/invocation/other/response", {"a": 1})
    assert status == 400 and body == {
        "errorMessage": "Invalid request ID",
        "errorType": "InvalidRequestID",
    }
    status, _, body = api.call("POST", f"{RT}/invocation/req-1/response", {"a": 1})
    assert status == 202 and body == {"status": "OK"}
    status, _, body = api.call("POST", f"{RT}/invocation/req-1/error", {"a": 1})
    assert status == 400 and error_type(body) == "InvalidRequestID"


def test_runtime_error_records_type(api: Api) -> None:
    """invocation/error answers 202 and keeps the function error type header."""
    start_invoke(api)
    status, _, _ = api.call(
        "POST",
        f"{RT}/invocation/req-1/error",
        {"errorMessage": "m", "errorType": "Body.Type"},
        {"Lambda-Runtime-Function-Error-Type": "Header.Type"},
    )
    assert status == 202
    assert api.box.platform is not None
    current = api.box.platform.current
    assert current is not None and current.error_type == "Header.Type"


def test_runtime_response_too_large(api: Api) -> None:
    """A response above 6 MB is refused with 413 RequestEntityTooLarge."""
    start_invoke(api)
    status, _, body = api.call(
        "POST", f"{RT}/invocation/req-1/response", raw=b"x" * (6 * 1024 * 1024 + 101)
    )
    assert status == 413
    assert error_type(body) == "RequestEntityTooLarge"
    assert api.box.platform is not None
    current = api.box.platform.current
    assert current is not None
    assert current.error_type == "Function.ResponseSizeTooLarge"


def test_runtime_init_error(api: Api) -> None:
    """init/error answers 202 during init and 403 once init is over."""
    assert api.box.platform is not None
    api.box.platform.runtime_state = "started"
    status, _, _ = api.call(
        "POST",
        f"{RT}/init/error",
        {"errorMessage": "m", "errorType": "T"},
        {"Lambda-Runtime-Function-Error-Type": "Runtime.Bad"},
    )
    assert status == 202
    assert api.box.platform.init_error is not None
    assert api.box.platform.init_error["errorType"] == "Runtime.Bad"
    api.box.platform.end_init()
    status, _, body = api.call("POST", f"{RT}/init/error", {})
    assert status == 403 and error_type(body) == "InvalidStateTransition"


def test_unknown_path_and_method(api: Api) -> None:
    """Unknown paths are 404, known paths with the wrong method 405."""
    status, _, _ = api.call("GET", "2018-06-01/runtime/nowhere")
    assert status == 404
    status, _, _ = api.call("POST", f"{RT}/invocation/next", {})
    assert status == 405
    status, _, _ = api.call("GET", f"{RT}/invocation/x/response")
    assert status == 405


# ------------------------------------------------------------------- Telemetry

GOOD = {
    "schemaVersion": "2022-12-13",
    "types": ["platform"],
    "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
    "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:1/x"},
}


def subscribe(api: Api, ident: str, doc: dict[str, Any]) -> tuple[int, Any]:
    status, _, body = api.call(
        "PUT", "2022-07-01/telemetry", doc, {"Lambda-Extension-Identifier": ident}
    )
    return status, body


def changed(path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(GOOD))
    target = doc
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("schemaVersion", "2020-01-01"),
        ("schemaVersion", KeyError),
        ("types", []),
        ("types", ["platform", "everything"]),
        ("buffering.maxItems", 999),
        ("buffering.maxItems", 10001),
        ("buffering.maxBytes", 262143),
        ("buffering.maxBytes", 1048577),
        ("buffering.timeoutMs", 24),
        ("buffering.timeoutMs", 30001),
        ("buffering.timeoutMs", "100"),
        ("destination.protocol", "HTTPS"),
        ("destination.URI", "https://sandbox.localdomain:1/x"),
        ("destination.URI", "http://example.com:8080/"),
        ("destination.URI", "http://10.0.0.1:8080/"),
        ("destination", KeyError),
    ],
)
def test_subscription_validation(api: Api, path: str, value: Any) -> None:
    """Each documented constraint of a subscription is enforced with 400
    ValidationError and a message naming the field."""
    ident = api.register("ext")
    status, body = subscribe(api, ident, changed(path, value))
    assert status == 400
    assert error_type(body) == "ValidationError"
    assert path.split(".")[-1] in body["errorMessage"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("buffering.maxItems", 10000),
        ("buffering.maxBytes", 1048576),
        ("buffering.timeoutMs", 30000),
        ("buffering", KeyError),
        ("destination.URI", "http://127.0.0.1:9/x"),
        ("types", ["platform", "function", "extension"]),
        ("schemaVersion", "2022-07-01"),
    ],
)
def test_subscription_accepts_limits(api: Api, path: str, value: Any) -> None:
    """Values at the documented limits are accepted with 200 OK."""
    ident = api.register("ext")
    status, body = subscribe(api, ident, changed(path, value))
    assert status == 200 and body == "OK"


def test_subscription_closed_after_init(api: Api) -> None:
    """Subscriptions are refused once init is over."""
    ident = api.register("ext")
    assert api.box.platform is not None
    api.box.platform.end_init()
    status, body = subscribe(api, ident, GOOD)
    assert status == 403 and error_type(body) == "Telemetry.SubscriptionClosed"


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[Any] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_delivery_retries_until_the_listener_is_up(api: Api) -> None:
    """Records produced while the listener is down are delivered once it
    listens, as JSON arrays of {time, type, record}."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ident = api.register("ext")
    doc = changed("destination.URI", f"http://sandbox.localdomain:{port}/in")
    assert subscribe(api, ident, doc)[0] == 200
    platform = api.box.platform
    assert platform is not None
    platform.emit("platform.start", {"requestId": "r1"})
    time.sleep(0.2)  # a few refused attempts
    collector = type("C", (_Collector,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            i["type"] == "platform.start" for b in collector.received for i in b
        ):
            time.sleep(0.02)
    finally:
        server.shutdown()
        server.server_close()
    items = [i for batch in collector.received for i in batch]
    assert any(
        i["type"] == "platform.start" and i["record"] == {"requestId": "r1"}
        for i in items
    )
    # The backlog of init (the extension's own registration) came too.
    assert any(i["type"] == "platform.extension" for i in items)
    assert all(set(i) == {"time", "type", "record"} for i in items)
    assert platform.dispatchers[0].failures >= 1


def test_buffering_holds_records_until_max_items(api: Api) -> None:
    """With a long timeoutMs, records wait in the buffer until maxItems of them
    are there, then go out together in one POST."""
    collector = type("C", (_Collector,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        ident = api.register("ext")
        doc = changed("destination.URI", f"http://127.0.0.1:{port}/in")
        doc["buffering"] = {"maxItems": 1000, "timeoutMs": 30000}
        assert subscribe(api, ident, doc)[0] == 200
        platform = api.box.platform
        assert platform is not None
        time.sleep(0.3)
        assert collector.received == []  # the backlog is still buffered
        backlog = len(platform.dispatchers[0]._buffer.items)
        for n in range(1000 - backlog):
            platform.emit("platform.start", {"requestId": f"r{n}"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not collector.received:
            time.sleep(0.02)
    finally:
        server.shutdown()
        server.server_close()
    assert len(collector.received) == 1
    assert len(collector.received[0]) == 1000


def _wait_for_record(
    caplog: pytest.LogCaptureFixture, text: str, limit_s: float = 5.0
) -> list[logging.LogRecord]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = [r for r in caplog.records if text in r.getMessage()]
        if found:
            return found
        time.sleep(0.01)
    return []


def test_client_reset_is_logged_at_debug_without_a_traceback(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A client that resets its connection mid-request (a runtime killed after an
    init error) is a debug log line, not a socketserver traceback on stderr."""
    caplog.set_level(logging.DEBUG, logger="palisade_sandbox.server")
    with Sandbox("app.handler", moto=False) as box:
        host, port = box.api_address.split(":")
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(
            f"POST /{RT}/init/error HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000\r\n\r\npartial".encode()
        )
        # Linger 0: close sends RST, as the kernel does for a killed process
        # with unread data.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        found = _wait_for_record(caplog, "went away")
    assert found and all(r.levelno == logging.DEBUG for r in found)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err


def test_other_handler_errors_are_logged_once_through_the_logger(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception escaping a handler is one ERROR record with its
    traceback, through the logger, and nothing printed by socketserver."""
    with Sandbox("app.handler", moto=False) as box:
        assert box.server is not None
        server = box.server._server
        try:
            raise RuntimeError("handler bug")
        except RuntimeError:
            server.handle_error(None, ("127.0.0.1", 1))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert str(errors[0].exc_info[1]) == "handler bug"
    assert "Traceback" not in capsys.readouterr().err
