"""Test doubles for the extension's tests: a Lambda API, a layer client, receivers.

``FakeLambda`` implements the Extensions API and the Telemetry API subscription on
loopback (the parts the extension calls), lets a test push INVOKE/SHUTDOWN events
and telemetry, and counts /next calls so tests can assert causality. ``Layer``
speaks the socket protocol the way the layer does. ``Analyzer`` receives signed
batches, checks the signature and deduplicates by batch id.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import queue
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from palisade_extension import protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Any


class FakeLambda:
    """The Extensions API (register, next, errors) and Telemetry subscribe."""

    def __init__(self, function: str = "orders", version: str = "7"):
        self.function = function
        self.version = version
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cond = threading.Condition()
        self.next_calls = 0
        self.registered: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.on_register: Any = None
        self.register_snapshot: Any = None
        self.log: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length) if length else b""
                return json.loads(data) if data else None

            def _reply(
                self, status: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(data)

            def do_POST(self) -> None:
                body = self._body()
                if self.path.endswith("/extension/register"):
                    if owner.on_register:
                        owner.register_snapshot = owner.on_register()
                    owner.registered.append(
                        {
                            "name": self.headers.get("Lambda-Extension-Name"),
                            "body": body,
                        }
                    )
                    owner.log.append("register")
                    self._reply(
                        200,
                        {
                            "functionName": owner.function,
                            "functionVersion": owner.version,
                            "handler": "app.handler",
                        },
                        {"Lambda-Extension-Identifier": "ext-" + uuid.uuid4().hex},
                    )
                elif self.path.endswith("/error"):
                    owner.errors.append(
                        {
                            "path": self.path,
                            "type": self.headers.get(
                                "Lambda-Extension-Function-Error-Type"
                            ),
                            "body": body,
                        }
                    )
                    owner.log.append("error")
                    self._reply(202, {"status": "OK"})
                else:
                    self._reply(404, {"errorType": "NotFound"})

            def do_PUT(self) -> None:
                body = self._body()
                if self.path.startswith("/2022-07-01/telemetry"):
                    owner.subscriptions.append(body)
                    owner.log.append("subscribe")
                    self._reply(200, "OK")
                else:
                    self._reply(404, {"errorType": "NotFound"})

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _wait_event(self) -> dict[str, Any] | None:
                """Block for the next event; give it back if the caller died."""
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        event = owner.events.get(timeout=0.05)
                    except queue.Empty:
                        if self._client_gone():
                            return None
                        continue
                    if event is not None and self._client_gone():
                        owner.events.put(event)
                        return None
                    return event
                return None

            def do_GET(self) -> None:
                if not self.path.endswith("/extension/event/next"):
                    self._reply(404, {})
                    return
                with owner.cond:
                    owner.next_calls += 1
                    owner.log.append("next")
                    owner.cond.notify_all()
                event = self._wait_event()
                if event is None:
                    self._reply(500, {"errorType": "Stopped"})
                    return
                self._reply(200, event, {"Lambda-Extension-Event-Identifier": "e"})

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeLambda:
        self.thread.start()
        return self

    def stop(self) -> None:
        for _ in range(4):
            self.events.put(None)
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, request_id: str, timeout_s: float = 30.0) -> None:
        self.events.put(
            {
                "eventType": "INVOKE",
                "deadlineMs": int((time.time() + timeout_s) * 1000),
                "requestId": request_id,
                "invokedFunctionArn": (
                    f"arn:aws:lambda:us-east-1:123456789012:function:{self.function}"
                ),
                "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-0-0"},
            }
        )

    def shutdown(self, reason: str = "spindown", budget_s: float = 2.0) -> None:
        self.events.put(
            {
                "eventType": "SHUTDOWN",
                "shutdownReason": reason,
                "deadlineMs": int((time.time() + budget_s) * 1000),
            }
        )

    def wait_next(self, count: int, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.next_calls >= count, timeout)

    def telemetry(self, items: list[dict[str, Any]]) -> None:
        """POST items to the subscriber, as Lambda does."""
        import urllib.request

        uri = self.subscriptions[-1]["destination"]["URI"]
        request = urllib.request.Request(
            uri,
            data=json.dumps(items).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200


def platform(kind: str, request_id: str, **fields: Any) -> dict[str, Any]:
    """One Telemetry API item."""
    return {
        "time": "2026-01-01T00:00:00.000Z",
        "type": f"platform.{kind}",
        "record": {"requestId": request_id, **fields},
    }


def make_record(
    request_id: str, events: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    record = {
        "schema": "palisade.record/1",
        "function": "orders",
        "version": "7",
        "request_id": request_id,
        "cold_start": request_id == "init",
        "started_at": time.time(),
        "duration_ms": 1.5,
        "outcome": "init" if request_id == "init" else "success",
        "events": events or [],
        "dropped": 0,
    }
    record.update(extra)
    return record


def make_event(
    kind: str, op: str, target: str, request_id: str, seq: int = 0, **detail: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": time.time(),
        "kind": kind,
        "op": op,
        "target": target,
        "detail": detail,
        "module": "app",
        "verdict": "allowed",
        "rule": "base",
        "request_id": request_id,
    }


class Layer:
    """A client of the extension socket, as the layer behaves."""

    def __init__(self, socket_path: str, key_path: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not (os.path.exists(key_path) and os.path.exists(socket_path)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no socket at {socket_path}")
            time.sleep(0.01)
        with open(key_path) as handle:
            self.key = bytes.fromhex(handle.read().strip())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        self.seq = 0

    def request(self, message: dict[str, Any]) -> dict[str, Any] | None:
        self.sock.sendall(protocol.encode(self.key, message))
        return protocol.read_message(self.sock, self.key)

    def record(self, record: dict[str, Any]) -> dict[str, Any] | None:
        self.seq += 1
        return self.request({"type": "record", "seq": self.seq, "record": record})

    def policy(self) -> dict[str, Any] | None:
        self.seq += 1
        return self.request({"type": "policy", "seq": self.seq})

    def close(self) -> None:
        self.sock.close()


class Analyzer:
    """Receives POST /v1/batches, checks the signature, dedups by batch_id."""

    def __init__(self, key_id: str = "k1", secret: str = "s3cret"):
        self.key_id = key_id
        self.secret = secret.encode()
        self.batches: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.arrived = 0  # requests received, answered or not
        self.duplicates = 0
        self.bad_signatures = 0
        self.status: int | None = None  # force an answer (e.g. 503) when set
        self.gate: threading.Event | None = None  # hold answers until set
        self.cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner.cond:
                    owner.arrived += 1
                if owner.gate is not None:
                    owner.gate.wait(30)
                status, answer = owner.handle(self.path, dict(self.headers), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.posts += 1
            self.cond.notify_all()
        if self.status is not None:
            return self.status, {"error": "forced", "message": "test says no"}
        if path != "/v1/batches":
            return 404, {"error": "not-found", "message": path}
        timestamp = headers.get("X-Palisade-Timestamp", "")
        expected = (
            "v1="
            + hmac.new(
                self.secret, timestamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
        )
        if headers.get("X-Palisade-Key-Id") != self.key_id or not hmac.compare_digest(
            headers.get("X-Palisade-Signature", ""), expected
        ):
            with self.cond:
                self.bad_signatures += 1
            return 401, {"error": "bad-signature", "message": "signature mismatch"}
        batch = json.loads(body)
        with self.cond:
            if batch["batch_id"] in self.batches:
                self.duplicates += 1
                return 200, {"status": "duplicate"}
            self.batches[batch["batch_id"]] = batch
            self.cond.notify_all()
        return 202, {"status": "stored"}

    def records(self) -> list[dict[str, Any]]:
        with self.cond:
            return [r for b in self.batches.values() for r in b["records"]]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def start(self) -> Analyzer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def build_opt(root: str) -> str:
    """A /opt tree like the layer zip's: launcher, extension code, layer package."""
    opt = os.path.join(root, "opt")
    os.makedirs(os.path.join(opt, "extensions"))
    os.makedirs(os.path.join(opt, "palisade"))
    os.makedirs(os.path.join(opt, "python"))
    launcher = os.path.join(opt, "extensions", "palisade")
    shutil.copy(os.path.join(REPO, "extension", "launcher"), launcher)
    os.chmod(launcher, 0o755)
    os.symlink(
        os.path.join(REPO, "extension", "palisade_extension"),
        os.path.join(opt, "palisade", "palisade_extension"),
    )
    os.symlink(
        os.path.join(REPO, "layer", "palisade"), os.path.join(opt, "python", "palisade")
    )
    return opt


def base_env(root: str, api: str, **extra: str) -> dict[str, str]:
    """Environment of an extension under test, everything under ``root``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PALISADE_", "PYTHON"))
    }
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": api,
            "AWS_LAMBDA_FUNCTION_NAME": "orders",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PALISADE_EXTENSION_PYTHON": sys.executable,
            "PALISADE_EXTENSION_SOCKET": os.path.join(root, "p", "extension.sock"),
            "PALISADE_EXTENSION_KEY": os.path.join(root, "p", "extension.key"),
            "PALISADE_SPOOL_DIR": os.path.join(root, "p", "spool"),
            "PALISADE_SINK": "file:" + os.path.join(root, "out.jsonl"),
            "PALISADE_OUTSIDE_VIEW": "off",
            "PALISADE_EXTENSION_LOG_LEVEL": "info",
        }
    )
    env.update(extra)
    return env


def spawn(
    opt: str, env: dict[str, str], name: str = "palisade"
) -> subprocess.Popen[bytes]:
    launcher = os.path.join(opt, "extensions", name)
    if name != "palisade":
        shutil.copy(os.path.join(opt, "extensions", "palisade"), launcher)
        os.chmod(launcher, 0o755)
    return subprocess.Popen(
        [launcher], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def read_batches(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
