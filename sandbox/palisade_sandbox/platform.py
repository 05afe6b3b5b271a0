"""The state behind the Runtime, Extensions and Telemetry APIs.

``Platform`` holds what Lambda's control plane knows about one execution environment:
the runtime's state, the registered extensions, the invocation in flight, and the
telemetry subscriptions. The HTTP layer (``server``) turns requests into calls here;
the lifecycle (``sandbox``) drives phases and waits on the conditions.

Every blocking wait (``next`` of the runtime or of an extension) is woken when the
environment is reset: a wait that belongs to an older generation returns an error
instead of an event, so a killed process never receives a later invocation.

Shortcomings:
    * Response streaming (``Lambda-Runtime-Function-Response-Mode: streaming``) and
      SnapStart's ``/runtime/restore/*`` are answered with 400/404, not emulated.
    * The Logs API (``/2020-08-15/logs``) is not implemented (404).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .telemetry import Dispatcher, Subscription, SubscriptionError, now_iso
from .telemetry import parse_subscription as _parse_subscription

# Lambda's payload limit for a synchronous response (6 MB plus framing slack).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
MAX_EXTENSIONS = 10
EVENTS = ("INVOKE", "SHUTDOWN")

Reply = tuple[int, dict[str, str], bytes]


def error_reply(status: int, error_type: str, message: str) -> Reply:
    """A JSON error body in the API's ``{errorMessage, errorType}`` shape."""
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    return status, {"Content-Type": "application/json"}, body


def json_reply(status: int, doc: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON body with status and extra headers."""
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(doc).encode(),
    )


ACCEPTED: Reply = json_reply(202, {"status": "OK"})


@dataclass
class Invocation:
    """One invoke as the platform tracks it."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    client_context: str | None = None
    cognito_identity: str | None = None
    started: float = 0.0  # monotonic, when the runtime received it
    # Outcome, set once by the runtime's response or error (or by the sandbox).
    status: str | None = None  # "success" | "error"
    response: bytes | None = None
    content_type: str = "application/json"
    error_type: str | None = None
    responded: float = 0.0


@dataclass
class Extension:
    """A registered extension (external: a file in opt/extensions; else internal)."""

    id: str
    name: str
    events: tuple[str, ...]
    external: bool
    generation: int
    registered_at: float
    state: str = "registered"  # registered -> ready (waiting in next) -> running
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    waiting: bool = False
    error: tuple[str, str] | None = None  # (init|exit, error type)
    subscription: Subscription | None = None


class Platform:
    """Control-plane state of one execution environment; thread-safe.

    Args:
        function_name, function_version, handler, function_arn: what register
            returns and what the runtime's headers carry.
        extension_names: file names found in opt/extensions (external extensions).
        on_telemetry: called with every telemetry item produced (for inspection).
    """

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        handler: str,
        function_arn: str,
        account_id: str,
        extension_names: set[str],
        on_telemetry: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.handler = handler
        self.function_arn = function_arn
        self.account_id = account_id
        self.extension_names = set(extension_names)
        self.cond = threading.Condition()
        self.generation = 0
        self.closing = False
        self.frozen = False
        self.deliveries = 0  # telemetry POSTs in flight
        # phase: "idle" (no environment), "init", "ready" (between invokes),
        # "invoke", "shutdown"
        self.phase = "idle"
        self.registration_open = False
        self.subscriptions_open = False
        self.extensions: dict[str, Extension] = {}
        self.runtime_state = "none"  # none | started | ready | invoking | done
        self.runtime_waiting = False
        self.init_error: dict[str, Any] | None = None
        self.pending: Invocation | None = None
        self.current: Invocation | None = None
        self.dispatchers: list[Dispatcher] = []
        self.telemetry: list[dict[str, Any]] = []
        self.backlog: list[dict[str, Any]] = []  # this init's items so far
        self._on_telemetry = on_telemetry

    # ----------------------------------------------------------------- lifecycle

    def begin_init(self) -> int:
        """Start a fresh environment generation in the init phase."""
        with self.cond:
            self.generation += 1
            self.phase = "init"
            self.registration_open = True
            self.subscriptions_open = True
            self.extensions = {}
            self.runtime_state = "none"
            self.runtime_waiting = False
            self.init_error = None
            self.pending = None
            self.current = None
            self.backlog = []
            self.cond.notify_all()
            return self.generation

    def end_init(self) -> None:
        """Close registration and subscription; the environment is ready."""
        with self.cond:
            self.registration_open = False
            self.subscriptions_open = False
            self.phase = "ready"
            self.backlog = []
            self.cond.notify_all()

    def reset(self) -> None:
        """Forget the environment: every blocked ``next`` of it fails."""
        with self.cond:
            self.generation += 1
            self.phase = "idle"
            self.registration_open = False
            self.subscriptions_open = False
            self.extensions = {}
            self.runtime_state = "none"
            self.runtime_waiting = False
            self.pending = None
            self.current = None
            self.cond.notify_all()
        self.close_dispatchers(0.0)

    def close(self) -> None:
        """Release every waiter for good (the sandbox is closing)."""
        with self.cond:
            self.closing = True
            self.generation += 1
            self.cond.notify_all()
        self.close_dispatchers(0.0)

    def close_dispatchers(self, flush_timeout: float) -> None:
        """Stop telemetry delivery, flushing for up to ``flush_timeout`` seconds."""
        with self.cond:
            dispatchers, self.dispatchers = self.dispatchers, []
        for dispatcher in dispatchers:
            dispatcher.close(flush_timeout)

    def set_frozen(self, frozen: bool, settle: float = 0.5) -> None:
        """Record whether the processes are stopped (delivery waits for thaw).

        When freezing, wait up to ``settle`` seconds for telemetry POSTs already
        in flight, so a listener is not stopped in the middle of one.
        """
        with self.cond:
            self.frozen = frozen
            self.cond.notify_all()
            if frozen:
                self.cond.wait_for(lambda: self.deliveries == 0, settle)

    def may_deliver(self, timeout: float) -> bool:
        """Block while frozen (up to ``timeout``); False when closing or frozen."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.frozen and not self.closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            if self.closing:
                return False
            self.deliveries += 1
            return True

    def delivered(self) -> None:
        """End one delivery allowed by ``may_deliver``."""
        with self.cond:
            self.deliveries -= 1
            self.cond.notify_all()

    def emit(self, event_type: str, record: Any) -> None:
        """Produce one telemetry item and queue it for every subscriber."""
        item = {"time": now_iso(), "type": event_type, "record": record}
        with self.cond:
            self.telemetry.append(item)
            if self.subscriptions_open:
                self.backlog.append(item)
            dispatchers = list(self.dispatchers)
        for dispatcher in dispatchers:
            dispatcher.push(item)
        if self._on_telemetry is not None:
            self._on_telemetry(item)

    def flush_telemetry(self) -> None:
        """Ask every dispatcher to deliver now."""
        with self.cond:
            dispatchers = list(self.dispatchers)
        for dispatcher in dispatchers:
            dispatcher.flush_soon()

    # ------------------------------------------------------- queries for waiters

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (holding nothing) until ``predicate()`` under the lock, or timeout."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def all_extensions_ready(self) -> bool:
        """True when every registered extension waits in ``next`` (lock held)."""
        return all(e.waiting or e.error is not None for e in self.extensions.values())

    def external_registered(self) -> set[str]:
        """Names of the registered external extensions."""
        with self.cond:
            return {e.name for e in self.extensions.values() if e.external}

    # --------------------------------------------------------------- invocations

    def start_invocation(self, invocation: Invocation) -> None:
        """Hand an invoke to the runtime and INVOKE events to the extensions."""
        with self.cond:
            self.phase = "invoke"
            self.pending = invocation
            self.current = invocation
            event = {
                "eventType": "INVOKE",
                "deadlineMs": invocation.deadline_ms,
                "requestId": invocation.request_id,
                "invokedFunctionArn": invocation.function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
            }
            for ext in self.extensions.values():
                if "INVOKE" in ext.events and ext.error is None:
                    ext.queue.append(event)
                    ext.waiting = False
            self.cond.notify_all()

    def send_shutdown(self, reason: str, deadline_ms: int) -> list[str]:
        """Queue SHUTDOWN for every external extension registered for it."""
        names = []
        with self.cond:
            self.phase = "shutdown"
            for ext in self.extensions.values():
                if "SHUTDOWN" in ext.events and ext.error is None:
                    ext.queue.append(
                        {
                            "eventType": "SHUTDOWN",
                            "shutdownReason": reason,
                            "deadlineMs": deadline_ms,
                        }
                    )
                    ext.waiting = False
                    names.append(ext.name)
            self.cond.notify_all()
        return names

    # ------------------------------------------------------------- Runtime API

    def runtime_next(self) -> Reply:
        """``GET /runtime/invocation/next``: block until an invoke."""
        with self.cond:
            generation = self.generation
            if self.phase == "idle":
                return error_reply(
                    403, "InvalidStateTransition", "no execution environment is up"
                )
            if (
                self.current is not None
                and self.current.status is None
                and self.runtime_state == "invoking"
            ):
                return error_reply(
                    403,
                    "InvalidStateTransition",
                    "State transition from Running to Ready failed for runtime. "
                    "Error: the current invocation has no response yet",
                )
            self.runtime_state = "ready"
            self.runtime_waiting = True
            self.cond.notify_all()
            while self.pending is None:
                if self.closing or self.generation != generation:
                    return error_reply(
                        500,
                        "Runtime.EnvironmentReset",
                        "the execution environment was reset; exit",
                    )
                self.cond.wait()
            invocation, self.pending = self.pending, None
            self.runtime_waiting = False
            self.runtime_state = "invoking"
            invocation.started = time.monotonic()
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
        }
        if invocation.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        if invocation.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = invocation.cognito_identity
        return 200, headers, invocation.payload

    def _invocation_for(self, request_id: str) -> Invocation | Reply:
        current = self.current
        if current is None or current.request_id != request_id:
            return error_reply(400, "InvalidRequestID", "Invalid request ID")
        if current.status is not None:
            return error_reply(400, "InvalidRequestID", "Invalid request ID")
        if self.runtime_state != "invoking":
            return error_reply(
                403,
                "InvalidStateTransition",
                f"State transition from {self.runtime_state} to "
                "InvocationResponse failed for runtime",
            )
        return current

    def runtime_response(
        self, request_id: str, body: bytes, headers: dict[str, str]
    ) -> Reply:
        """``POST /runtime/invocation/{id}/response``."""
        mode = headers.get("lambda-runtime-function-response-mode")
        with self.cond:
            found = self._invocation_for(request_id)
            if not isinstance(found, Invocation):
                return found
            if mode is not None and mode != "streaming":
                found.status = "error"
                found.error_type = "Runtime.InvalidResponseModeHeader"
                found.response = b""
                self._done(found)
                return error_reply(
                    400, "InvalidFunctionResponseMode", "Invalid function response mode"
                )
            if len(body) > MAX_RESPONSE_BYTES:
                found.status = "error"
                found.error_type = "Function.ResponseSizeTooLarge"
                found.response = json.dumps(
                    {
                        "errorMessage": "Response payload size exceeded maximum "
                        f"allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                    }
                ).encode()
                self._done(found)
                return error_reply(
                    413,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} "
                    "bytes).",
                )
            found.status = "success"
            found.response = body
            found.content_type = headers.get("content-type", "application/json")
            self._done(found)
        return ACCEPTED

    def runtime_error(
        self, request_id: str, body: bytes, headers: dict[str, str]
    ) -> Reply:
        """``POST /runtime/invocation/{id}/error``."""
        with self.cond:
            found = self._invocation_for(request_id)
            if not isinstance(found, Invocation):
                return found
            found.status = "error"
            # awslambdaric sends no error-type header; the body names the type.
            found.error_type = headers.get(
                "lambda-runtime-function-error-type"
            ) or _body_error_type(body)
            found.response = body
            self._done(found)
        return ACCEPTED

    def _done(self, invocation: Invocation) -> None:
        invocation.responded = time.monotonic()
        self.runtime_state = "done"
        self.cond.notify_all()

    def runtime_init_error(self, body: bytes, headers: dict[str, str]) -> Reply:
        """``POST /runtime/init/error``."""
        with self.cond:
            if self.phase != "init" or self.runtime_state not in ("started", "none"):
                return error_reply(
                    403,
                    "InvalidStateTransition",
                    f"State transition from {self.runtime_state} to InitError "
                    "failed for runtime",
                )
            error_type = headers.get(
                "lambda-runtime-function-error-type", "Runtime.Unknown"
            )
            try:
                doc = json.loads(body) if body else {}
            except ValueError:
                doc = {"errorMessage": body.decode("utf-8", "replace")}
            if not isinstance(doc, dict):
                doc = {"errorMessage": str(doc)}
            # The header is what Lambda reports (the RIC may override the body's).
            self.init_error = {**doc, "errorType": error_type}
            self.runtime_state = "init_error"
            self.cond.notify_all()
        return ACCEPTED

    # ----------------------------------------------------------- Extensions API

    def register(self, name: str | None, body: bytes, features: str | None) -> Reply:
        """``POST /extension/register``."""
        if not name:
            return error_reply(
                403, "Extension.InvalidExtensionName", "Empty extension name"
            )
        try:
            doc = json.loads(body) if body.strip() else {}
            if not isinstance(doc, dict):
                raise ValueError(f"expected a JSON object, found {type(doc).__name__}")
            events = doc.get("events", [])
            if not isinstance(events, list):
                raise ValueError(f"events must be a list, found {events!r}")
            if doc.get("configurationKeys"):
                raise ValueError(
                    "configurationKeys are deprecated; use environment variables"
                )
        except ValueError as exc:
            return error_reply(403, "InvalidRequestFormat", str(exc))
        with self.cond:
            external = name in self.extension_names
            for event in events:
                if event not in EVENTS or (event == "SHUTDOWN" and not external):
                    return error_reply(
                        403,
                        "Extension.InvalidEventType",
                        f"{event}: event type not allowed for a "
                        f"{'external' if external else 'internal'} extension",
                    )
            if not self.registration_open:
                return error_reply(
                    403,
                    "Extension.RegistrationClosed",
                    "Extension registration closed already",
                )
            if any(e.name == name for e in self.extensions.values()):
                return error_reply(
                    403,
                    "Extension.InvalidExtensionState",
                    "Extension with this name already registered",
                )
            if len(self.extensions) >= MAX_EXTENSIONS:
                return error_reply(
                    403,
                    "Extension.TooManyExtensions",
                    f"Extension limit ({MAX_EXTENSIONS}) reached",
                )
            ext = Extension(
                id=str(uuid.uuid4()),
                name=name,
                events=tuple(dict.fromkeys(events)),
                external=external,
                generation=self.generation,
                registered_at=time.monotonic(),
            )
            self.extensions[ext.id] = ext
            self.cond.notify_all()
        self.emit(
            "platform.extension",
            {"name": name, "state": "Ready", "events": list(ext.events)},
        )
        doc_out: dict[str, Any] = {
            "functionName": self.function_name,
            "functionVersion": self.function_version,
            "handler": self.handler,
        }
        if features and "accountId" in [f.strip() for f in features.split(",")]:
            doc_out["accountId"] = self.account_id
        return json_reply(200, doc_out, {"Lambda-Extension-Identifier": ext.id})

    def _extension(self, identifier: str | None) -> Extension | Reply:
        if not identifier:
            return error_reply(
                403,
                "Extension.MissingExtensionIdentifier",
                "Missing Lambda-Extension-Identifier header",
            )
        try:
            uuid.UUID(identifier)
        except ValueError:
            return error_reply(
                403,
                "Extension.InvalidExtensionIdentifier",
                "Invalid Lambda-Extension-Identifier",
            )
        ext = self.extensions.get(identifier)
        if ext is None:
            return error_reply(
                403,
                "Extension.UnknownExtensionIdentifier",
                f"Unknown extension {identifier}",
            )
        return ext

    def extension_next(self, identifier: str | None) -> Reply:
        """``GET /extension/event/next``: block until an event for this extension."""
        with self.cond:
            found = self._extension(identifier)
            if not isinstance(found, Extension):
                return found
            ext = found
            if ext.error is not None:
                return error_reply(
                    403,
                    "Extension.InvalidExtensionState",
                    f"State transition from {ext.state} to Ready failed for "
                    f"extension {ext.name}: it reported an error",
                )
            ext.state = "ready"
            ext.waiting = True
            self.cond.notify_all()
            while not ext.queue:
                if self.closing or self.generation != ext.generation:
                    return error_reply(
                        500,
                        "Extension.EnvironmentReset",
                        "the execution environment was reset; exit",
                    )
                self.cond.wait()
            event = ext.queue.popleft()
            ext.waiting = False
            ext.state = "running"
        return json_reply(
            200, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())}
        )

    def extension_error(
        self, kind: str, identifier: str | None, headers: dict[str, str], body: bytes
    ) -> Reply:
        """``POST /extension/init/error`` and ``/extension/exit/error``."""
        error_type = headers.get("lambda-extension-function-error-type")
        with self.cond:
            found = self._extension(identifier)
            if not isinstance(found, Extension):
                return found
            if not error_type:
                return error_reply(
                    400,
                    "Extension.MissingHeader",
                    "Missing Lambda-Extension-Function-Error-Type header",
                )
            if kind == "init" and self.phase != "init":
                return error_reply(
                    403,
                    "Extension.InvalidExtensionState",
                    f"State transition from {found.state} to InitError failed for "
                    f"extension {found.name}: init is over",
                )
            found.error = (kind, error_type)
            found.state = f"{kind}_error"
            self.cond.notify_all()
        return ACCEPTED

    # ------------------------------------------------------------ Telemetry API

    def subscribe(self, identifier: str | None, body: bytes) -> Reply:
        """``PUT /telemetry``: validate and start delivery."""
        with self.cond:
            found = self._extension(identifier)
            if not isinstance(found, Extension):
                return found
            if not self.subscriptions_open:
                return error_reply(
                    403,
                    "Telemetry.SubscriptionClosed",
                    "Telemetry API is no longer accepting subscriptions",
                )
            ext = found
        try:
            subscription = _parse_subscription(ext.name, body)
        except SubscriptionError as exc:
            return error_reply(400, exc.error_type, str(exc))
        dispatcher = Dispatcher(subscription, self.may_deliver, self.delivered)
        with self.cond:
            if ext.subscription is not None:
                replaced = [
                    d for d in self.dispatchers if d.subscription is ext.subscription
                ]
                for old in replaced:
                    self.dispatchers.remove(old)
                    old.close()
            ext.subscription = subscription
            # Records produced before the subscription (initStart and so on) are
            # delivered too, as Lambda buffers them from the start of init.
            backlog = list(self.backlog)
            self.dispatchers.append(dispatcher)
        for item in backlog:
            dispatcher.push(item)
        self.emit(
            "platform.telemetrySubscription",
            {
                "name": ext.name,
                "state": "Subscribed",
                "types": list(subscription.types),
            },
        )
        return 200, {"Content-Type": "text/plain"}, b"OK"


def _body_error_type(body: bytes) -> str:
    """``errorType`` from an error body, ``Runtime.Unknown`` when it has none."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return "Runtime.Unknown"
    if isinstance(doc, dict) and isinstance(doc.get("errorType"), str):
        return doc["errorType"] or "Runtime.Unknown"
    return "Runtime.Unknown"
