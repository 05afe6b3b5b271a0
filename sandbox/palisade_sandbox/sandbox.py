"""One local Lambda execution environment: init, invoke, freeze, reset, shutdown.

    with Sandbox("app.handler", code_dir="src", opt_dir="source") as box:
        result = box.invoke({"hello": "world"})

The lifecycle follows Lambda's: on the first invoke (or ``init()``) every executable
in opt/extensions starts in parallel and must register; then the runtime starts
(through ``AWS_LAMBDA_EXEC_WRAPPER`` when set) and init ends when the runtime and
every extension wait in ``next``, all within ``init_timeout`` (10 s). Each invoke
must finish (runtime and extensions back in ``next``) within ``timeout``; after it
the processes are frozen with SIGSTOP until the next invoke. A timeout, a runtime
exit or an extension crash resets the environment (SHUTDOWN to the extensions, then
SIGKILL); the next invoke is a cold start again. ``shutdown()`` sends SHUTDOWN
(spindown) with Lambda's 2 s budget and kills whatever is left.

Shortcomings:
    * One invoke at a time (Lambda's on-demand model); concurrent ``invoke`` calls
      are serialised.
    * After an init failure Lambda retries init inside the invoke phase with the
      function's timeout ("suppressed init"); the sandbox reports the init error
      and starts afresh on the next invoke instead.
    * Memory is measured (peak RSS of the runtime) but not limited: exceeding
      ``memory_mb`` does not kill the function.
    * CPU, file-descriptor and /tmp size limits are not applied.
    * The 6 MB request limit is checked on the sandbox's own JSON encoding of the
      event; ``raw`` bytes are checked for size but not for being JSON, and the
      client context's size limit is not checked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aws import MotoEndpoint
from .environment import (
    FunctionConfig,
    extension_environment,
    function_environment,
)
from .layout import Layout, build_layout, remove_tree
from .platform import Invocation, Platform
from .processes import Child
from .server import ApiServer

log = logging.getLogger(__name__)

# Lambda's configuration limits (function timeout, memory size).
MAX_TIMEOUT_S = 900.0
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10240
# Lambda refuses a synchronous Invoke whose payload is larger than this.
MAX_REQUEST_BYTES = 6_291_456
SHUTDOWN_BUDGET_S = 2.0
RUNTIME_SHUTDOWN_S = 0.3
RESET_BUDGET_S = 2.0


class SandboxError(RuntimeError):
    """The sandbox itself could not do what was asked (not the function)."""


class RequestTooLargeError(SandboxError, ValueError):
    """The event is over Lambda's 6 MB synchronous request limit; the function
    was not invoked (Lambda's Invoke answers HTTP 413).

    Attributes:
        error_type: ``RequestEntityTooLargeException``, the code Lambda returns
            (its API reference names the exception ``RequestTooLargeException``).
        size: the payload's size in bytes.
    """

    error_type = "RequestEntityTooLargeException"
    status_code = 413

    def __init__(self, size: int) -> None:
        super().__init__(
            f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the "
            f"InvokeFunction operation (the event is {size} bytes as JSON)"
        )
        self.size = size


@dataclass
class InvocationResult:
    """What one invoke produced.

    Attributes:
        request_id: the invocation's request id.
        status: ``success``, ``error`` (the handler raised or the runtime reported
            an error), ``timeout``, ``crash`` (the runtime exited) or
            ``init_error`` (init failed; the handler never ran).
        payload: the decoded JSON response on success (raw text when not JSON).
        error: ``{errorType, errorMessage, stackTrace?}`` for any other status.
        duration_ms: the invoke phase, from the event reaching the runtime to the
            runtime and every extension waiting in ``next`` again.
        cold_start: this invoke ran init first.
        init_error: the init error document when init failed.
        init_duration_ms: init's duration on a cold start.
        max_memory_mb: peak RSS of the runtime process.
        logs: the function's output lines during this invoke; for an init error,
            everything the runtime and the extensions printed during init.
        reset: the environment was reset after this invoke.
        reset_reason: why: ``timeout`` or ``failure`` (None without a reset).
        timed_out: what had not called ``next`` when the timeout hit
            (``runtime`` and/or extension names). With status ``success`` the
            function answered in time but an extension did not finish: Lambda
            returns the response, reports the invoke as ``timeout`` and resets
            the environment, and so does the sandbox.
    """

    request_id: str
    status: str
    payload: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    cold_start: bool = False
    init_error: dict[str, Any] | None = None
    init_duration_ms: float | None = None
    max_memory_mb: int | None = None
    logs: list[str] = field(default_factory=list)
    reset: bool = False
    reset_reason: str | None = None
    timed_out: list[str] = field(default_factory=list)
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        """True when the handler returned normally."""
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (without the raw bytes)."""
        doc = {k: v for k, v in self.__dict__.items() if k != "raw"}
        return doc


def _encode_event(event: Any) -> bytes:
    try:
        return json.dumps(event, allow_nan=False).encode()
    except ValueError as exc:
        raise ValueError(
            f"the event is not standard JSON ({exc}); Lambda's Invoke refuses "
            "NaN and Infinity, use null or a string instead"
        ) from exc


def _trace_id() -> str:
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


def _kill_children(children: list[Child]) -> None:
    for child in list(children):
        child.signal_group(signal.SIGKILL)
        child.signal_group(signal.SIGCONT)


class Sandbox:
    """A local Lambda execution environment for one function.

    Args:
        handler: ``module.function`` as in the function's configuration.
        code_dir: the function's code (copied read-only into the task root);
            None for an empty task root.
        opt_dir: what stands for /opt: None (nothing), ``"source"`` (the layer and
            extension from this checkout), a layer ``.zip``, or a directory.
        env: the function's environment variables (given to extensions too).
        timeout: the function timeout in seconds (Lambda's default is 3, its
            maximum 900).
        memory_mb: reported as ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` and in reports;
            128 to 10240, as Lambda accepts.
        init_timeout: the init phase limit shared by extensions and runtime.
        aws_endpoint: an AWS endpoint URL on loopback (a running moto server).
        moto: start a moto server when no ``aws_endpoint`` is given; with False
            and no endpoint, AWS calls fail with "connection refused".
        freeze: SIGSTOP the processes between invokes (off for debugging).
        extensions: extra extension executables added to opt/extensions.
        function_name: the function's name.
        work_dir: where to lay out the file system (a new temporary directory
            by default, removed by ``shutdown``).
        copy_code: copy ``code_dir`` (True) or use it in place.
        on_log: called with ``(process name, stream, line)`` for all output.
    """

    def __init__(
        self,
        handler: str,
        code_dir: str | Path | None = None,
        *,
        opt_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 3.0,
        memory_mb: int = 128,
        init_timeout: float = 10.0,
        aws_endpoint: str | None = None,
        moto: bool = True,
        freeze: bool = True,
        extensions: list[str | Path] | None = None,
        function_name: str = "palisade-sandbox",
        work_dir: str | Path | None = None,
        copy_code: bool = True,
        on_log: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
            raise ValueError(
                f"timeout must be a finite number of seconds in (0, "
                f"{MAX_TIMEOUT_S:g}] as in Lambda; found {timeout!r}"
            )
        if not (math.isfinite(init_timeout) and init_timeout > 0):
            raise ValueError(
                f"init_timeout must be a finite positive number of seconds; "
                f"found {init_timeout!r}"
            )
        if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
            raise ValueError(
                f"memory_mb must be {MIN_MEMORY_MB} to {MAX_MEMORY_MB} as in "
                f"Lambda; found {memory_mb!r}"
            )
        if code_dir is not None and not Path(code_dir).is_dir():
            raise FileNotFoundError(
                f"code directory {str(code_dir)!r} does not exist or is not a directory"
            )
        self.config = FunctionConfig(
            handler=handler,
            function_name=function_name,
            memory_mb=memory_mb,
            timeout=timeout,
        )
        self.init_timeout = init_timeout
        self.freeze_enabled = freeze
        self._code_dir = Path(code_dir) if code_dir is not None else None
        self._opt = opt_dir
        self._user_env = dict(env or {})
        self._aws_endpoint = aws_endpoint
        self._want_moto = moto and aws_endpoint is None
        self._extra_extensions = [Path(p) for p in extensions or []]
        self._work_arg = Path(work_dir) if work_dir is not None else None
        self._copy_code = copy_code
        self._on_log = on_log

        self.layout: Layout | None = None
        self.platform: Platform | None = None
        self.server: ApiServer | None = None
        self.moto: MotoEndpoint | None = None
        self.runtime: Child | None = None
        self.extensions: dict[str, Child] = {}
        self.children: list[Child] = []  # every process ever started, for cleanup
        self.initialized = False
        self.frozen = False
        self.init_durations_ms: list[float] = []
        self.results: list[InvocationResult] = []
        self._started = False
        self._closed = False
        self._owned_work: Path | None = None
        self._lock = threading.RLock()
        self._invoke_logs: list[str] | None = None
        self._function_env: dict[str, str] = {}
        self._invocations_in_env = 0
        self._init_logs: list[str] = []
        self._finalizer = weakref.finalize(self, _kill_children, self.children)

    # ------------------------------------------------------------- properties

    @property
    def api_address(self) -> str:
        """``127.0.0.1:<port>`` of the Runtime/Extensions/Telemetry APIs."""
        if self.server is None:
            raise SandboxError("the sandbox is not started; call start() first")
        return self.server.address

    @property
    def aws_endpoint(self) -> str | None:
        """The AWS endpoint URL the function uses (moto)."""
        return self._aws_endpoint

    @property
    def runtime_pid(self) -> int | None:
        """Pid of the current runtime process (None before init)."""
        return self.runtime.pid if self.runtime is not None else None

    @property
    def extension_pids(self) -> dict[str, int]:
        """Pid of each current extension process, by file name."""
        return {name: child.pid for name, child in self.extensions.items()}

    @property
    def telemetry(self) -> list[dict[str, Any]]:
        """Every telemetry item the platform produced, in order."""
        return list(self.platform.telemetry) if self.platform is not None else []

    @property
    def function_env(self) -> dict[str, str]:
        """The runtime's environment (before an exec wrapper changes it)."""
        return dict(self._function_env)

    def delivered_telemetry(self) -> list[dict[str, Any]]:
        """The telemetry items the subscribers acknowledged so far."""
        if self.platform is None:
            return []
        with self.platform.cond:
            dispatchers = list(self.platform.dispatchers)
        return [item for d in dispatchers for item in d.delivered]

    # --------------------------------------------------------------- lifecycle

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self) -> Sandbox:
        """Lay out the file system and start the API server (and moto)."""
        with self._lock:
            if self._started:
                return self
            if self._closed:
                raise SandboxError("the sandbox was shut down; create a new one")
            self._started = True
            try:
                self._start()
            except BaseException:
                self.shutdown()
                raise
            return self

    def _start(self) -> None:
        if self._work_arg is None:
            work = Path(tempfile.mkdtemp(prefix="palisade-sandbox-"))
            self._owned_work = work
        else:
            work = self._work_arg
        self.layout = build_layout(
            work, self._code_dir, self._opt, self._extra_extensions, self._copy_code
        )
        if self._want_moto:
            self.moto = MotoEndpoint()
            self._aws_endpoint = self.moto.start()
        names = {p.name for p in self.layout.extension_files()}
        self.platform = Platform(
            function_name=self.config.function_name,
            function_version=self.config.function_version,
            handler=self.config.handler,
            function_arn=self.config.arn,
            account_id=self.config.account_id,
            extension_names=names,
        )
        self.server = ApiServer(self.platform)
        self.server.start()
        self._function_env = function_environment(
            self.config,
            self.layout,
            self.server.address,
            self._aws_endpoint,
            self._user_env,
        )

    def set_env(self, env: Mapping[str, str]) -> None:
        """Add or change function environment variables before the first init
        (for values that depend on the layout, such as paths under opt).

        Raises:
            SandboxError: the environment is already initialised.
        """
        with self._lock:
            if self.initialized:
                raise SandboxError(
                    "set_env must come before the first invoke; the environment "
                    "is already initialised"
                )
            self._user_env.update(env)
            if self.server is not None and self.layout is not None:
                self._function_env = function_environment(
                    self.config,
                    self.layout,
                    self.server.address,
                    self._aws_endpoint,
                    self._user_env,
                )

    def shutdown(self) -> None:
        """SHUTDOWN (spindown) within 2 s, kill what is left, stop the servers.

        Safe to call more than once and after a failed start.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.initialized:
                    self._stop_environment("spindown", graceful=True)
            finally:
                self._cleanup()

    def _cleanup(self) -> None:
        for child in self.children:
            if child.alive:
                child.kill()
        if self.platform is not None:
            self.platform.close()
        if self.server is not None:
            self.server.stop()
        if self.moto is not None:
            self.moto.stop()
        if self._owned_work is not None:
            remove_tree(self._owned_work)
        self.initialized = False

    # -------------------------------------------------------------------- init

    def init(self) -> dict[str, Any] | None:
        """Run the init phase now; return the init error, or None on success."""
        with self._lock:
            self.start()
            if self.initialized:
                return None
            return self._init()

    def _on_exit(self, child: Child) -> None:
        platform = self.platform
        if platform is not None:
            with platform.cond:
                platform.cond.notify_all()

    def _log_line(self, name: str, stream: str, line: str) -> None:
        platform = self.platform
        is_runtime = name == "runtime"
        if platform is not None:
            platform.emit("function" if is_runtime else "extension", line)
        if is_runtime and self._invoke_logs is not None:
            self._invoke_logs.append(line)
        if self._on_log is not None:
            self._on_log(name, stream, line)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        assert self.layout is not None
        child = Child(
            name,
            argv,
            env,
            self.layout.task,
            on_line=self._log_line,
            on_exit=self._on_exit,
        )
        self.children.append(child)
        return child

    def _runtime_argv(self) -> list[str]:
        assert self.layout is not None
        argv = [sys.executable, str(self.layout.bootstrap)]
        wrapper = self._function_env.get("AWS_LAMBDA_EXEC_WRAPPER")
        if wrapper:
            # Lambda's bootstrap checks the wrapper the same way (exit 127 / 126).
            if not os.path.isfile(wrapper):
                raise _InitFailure(
                    "Runtime.InvalidEntrypoint",
                    f"AWS_LAMBDA_EXEC_WRAPPER {wrapper!r} does not exist",
                )
            if not os.access(wrapper, os.X_OK):
                raise _InitFailure(
                    "Runtime.InvalidEntrypoint",
                    f"AWS_LAMBDA_EXEC_WRAPPER {wrapper!r} is not an executable",
                )
            argv.insert(0, wrapper)
        return argv

    def _init(self) -> dict[str, Any] | None:
        assert self.platform is not None and self.layout is not None
        platform = self.platform
        started = time.monotonic()
        deadline = started + self.init_timeout
        platform.begin_init()
        init_record = {"initializationType": "on-demand", "phase": "init"}
        platform.emit(
            "platform.initStart",
            {
                **init_record,
                "runtimeVersion": f"python:{sys.version_info.major}."
                f"{sys.version_info.minor}.sandbox",
                "runtimeVersionArn": "arn:aws:lambda:local::runtime:sandbox",
                "functionName": self.config.function_name,
                "functionVersion": self.config.function_version,
            },
        )
        error: dict[str, Any] | None = None
        try:
            self._start_extensions(deadline)
            self._start_runtime(deadline)
        except _InitFailure as failure:
            error = failure.document()

        duration_ms = (time.monotonic() - started) * 1000
        status = "success" if error is None else "error"
        done: dict[str, Any] = {**init_record, "status": status}
        if error is not None:
            done["errorType"] = error["errorType"]
            if error["errorType"] == "Sandbox.Timedout":
                done["status"] = "timeout"
        platform.emit("platform.initRuntimeDone", done)
        platform.emit(
            "platform.initReport",
            {**done, "metrics": {"durationMs": round(duration_ms, 3)}},
        )
        self.init_durations_ms.append(duration_ms)
        if error is not None:
            children = [c for c in (self.runtime, *self.extensions.values()) if c]
            reason = "timeout" if done["status"] == "timeout" else "failure"
            self._stop_environment(reason, graceful=False)
            # What the processes printed is the only clue to a bare exit status;
            # read it once they are gone and their output is drained.
            self._init_logs = [
                line for child in children for _stream, line in child.output
            ]
            tail = self._init_logs[-1] if self._init_logs else ""
            log.info("init failed: %s; last output line: %s", error, tail)
            return error
        platform.end_init()
        self.initialized = True
        return None

    def _start_extensions(self, deadline: float) -> None:
        assert self.platform is not None and self.layout is not None
        platform = self.platform
        files = self.layout.extension_files()
        env = extension_environment(self._function_env)
        self.extensions = {}
        for path in files:
            try:
                self.extensions[path.name] = self._spawn(path.name, [str(path)], env)
            except OSError as exc:
                raise _InitFailure(
                    "Extension.LaunchError",
                    f"extension {path.name} could not start: {exc}",
                ) from exc
        names = set(self.extensions)

        def settled() -> bool:
            registered = {e.name for e in platform.extensions.values()}
            return names <= registered or self._dead_extension() is not None

        platform.wait_for(settled, max(0.0, deadline - time.monotonic()))
        dead = self._dead_extension()
        registered = {e.name for e in platform.extensions.values()}
        if dead is not None and dead not in registered:
            raise _InitFailure(
                "Extension.Crash",
                f"extension {dead} exited before registering "
                f"({self.extensions[dead].describe_exit()})",
            )
        missing = names - registered
        if missing:
            others = sorted(registered - names)
            hint = (
                f"; registered instead: {others} (Lambda-Extension-Name must equal "
                "the extension's file name)"
                if others
                else ""
            )
            raise _InitFailure(
                "Sandbox.Timedout",
                f"extensions {sorted(missing)} did not register within the "
                f"{self.init_timeout:g} s init limit{hint}",
            )

    def _dead_extension(self) -> str | None:
        for name, child in self.extensions.items():
            if not child.alive:
                return name
        return None

    def _extension_error(self) -> tuple[str, str] | None:
        assert self.platform is not None
        for ext in self.platform.extensions.values():
            if ext.error is not None:
                return ext.name, ext.error[1]
        return None

    def _start_runtime(self, deadline: float) -> None:
        assert self.platform is not None
        platform = self.platform
        argv = self._runtime_argv()
        with platform.cond:
            platform.runtime_state = "started"
        try:
            self.runtime = self._spawn("runtime", argv, self._function_env)
        except OSError as exc:
            raise _InitFailure(
                "Runtime.InvalidEntrypoint", f"the runtime could not start: {exc}"
            ) from exc
        runtime = self.runtime

        def settled() -> bool:
            return (
                (platform.runtime_waiting and platform.all_extensions_ready())
                or platform.init_error is not None
                or not runtime.alive
                or self._dead_extension() is not None
                or self._extension_error() is not None
            )

        platform.wait_for(settled, max(0.0, deadline - time.monotonic()))
        if platform.init_error is not None:
            doc = dict(platform.init_error)
            raise _InitFailure(
                doc.get("errorType", "Runtime.Unknown"),
                str(doc.get("errorMessage", "")),
                doc.get("stackTrace"),
            )
        ext_error = self._extension_error()
        if ext_error is not None:
            raise _InitFailure(
                ext_error[1], f"extension {ext_error[0]} reported an init error"
            )
        if not runtime.alive:
            raise _InitFailure(
                "Runtime.ExitError",
                f"Runtime exited with error: {runtime.describe_exit()}",
            )
        dead = self._dead_extension()
        if dead is not None:
            raise _InitFailure(
                "Extension.Crash",
                f"extension {dead} exited during init "
                f"({self.extensions[dead].describe_exit()})",
            )
        if not (platform.runtime_waiting and platform.all_extensions_ready()):
            raise _InitFailure(
                "Sandbox.Timedout",
                f"init did not finish within {self.init_timeout:g} s "
                "(the runtime and every extension must call next)",
            )

    # ------------------------------------------------------------------ invoke

    def invoke(
        self,
        event: Any = None,
        *,
        client_context: Mapping[str, Any] | None = None,
        cognito_identity: Mapping[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> InvocationResult:
        """Invoke the function once with ``event`` (JSON-encoded) or ``raw`` bytes.

        Runs init first when the environment is not up (a cold start).

        Raises:
            RequestTooLargeError: the payload is over 6,291,456 bytes; as in
                Lambda nothing runs (no init, no result recorded).
            ValueError: ``event`` holds NaN or Infinity, which standard JSON
                (and so Lambda's Invoke) does not accept.
        """
        payload = raw if raw is not None else _encode_event(event)
        if len(payload) > MAX_REQUEST_BYTES:
            raise RequestTooLargeError(len(payload))
        with self._lock:
            self.start()
            request_id = str(uuid.uuid4())
            cold = not self.initialized
            init_ms: float | None = None
            if cold:
                error = self._init()
                init_ms = self.init_durations_ms[-1]
                if error is not None:
                    result = InvocationResult(
                        request_id=request_id,
                        status="init_error",
                        error=error,
                        cold_start=True,
                        init_error=error,
                        init_duration_ms=init_ms,
                        reset=True,
                        reset_reason=(
                            "timeout"
                            if error.get("errorType") == "Sandbox.Timedout"
                            else "failure"
                        ),
                        logs=list(self._init_logs),
                    )
                    self.results.append(result)
                    return result
            self._thaw()
            result = self._invoke(request_id, payload, client_context, cognito_identity)
            result.cold_start = cold
            result.init_duration_ms = init_ms
            self.results.append(result)
            return result

    def _invoke(
        self,
        request_id: str,
        payload: bytes,
        client_context: Mapping[str, Any] | None,
        cognito_identity: Mapping[str, Any] | None,
    ) -> InvocationResult:
        assert self.platform is not None and self.runtime is not None
        platform, runtime = self.platform, self.runtime
        timeout = self.config.timeout
        trace = _trace_id()
        invocation = Invocation(
            request_id=request_id,
            payload=payload,
            deadline_ms=int((time.time() + timeout) * 1000),
            function_arn=self.config.arn,
            trace_id=trace,
            client_context=json.dumps(client_context) if client_context else None,
            cognito_identity=json.dumps(cognito_identity) if cognito_identity else None,
        )
        tracing = {"type": "X-Amzn-Trace-Id", "value": trace}
        platform.emit(
            "platform.start",
            {
                "requestId": request_id,
                "version": self.config.function_version,
                "tracing": tracing,
            },
        )
        logs: list[str] = []
        self._invoke_logs = logs
        started = time.monotonic()
        deadline = started + timeout
        platform.start_invocation(invocation)

        platform.wait_for(
            lambda: (
                invocation.status is not None
                or not runtime.alive
                or self._dead_extension() is not None
            ),
            max(0.0, deadline - time.monotonic()),
        )
        result = InvocationResult(request_id=request_id, status="success", logs=logs)
        reset_reason: str | None = None
        status_word = "success"
        if invocation.status is not None:
            self._fill_outcome(result, invocation)
            status_word = "success" if invocation.status == "success" else "error"
            platform.emit(
                "platform.runtimeDone",
                self._runtime_done(invocation, status_word, tracing),
            )
            # The invoke phase lasts until the runtime and every extension are back
            # in next, within the same timeout.
            platform.wait_for(
                lambda: (
                    (platform.runtime_waiting and platform.all_extensions_ready())
                    or not runtime.alive
                    or self._dead_extension() is not None
                ),
                max(0.0, deadline - time.monotonic()),
            )
            if not runtime.alive or self._dead_extension() is not None:
                reset_reason = "failure"
            elif not (platform.runtime_waiting and platform.all_extensions_ready()):
                # The client keeps the response; the invoke phase still timed out.
                reset_reason = "timeout"
                status_word = "timeout"
                result.timed_out = self._not_in_next()
        elif not runtime.alive:
            result.status = "crash"
            result.error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited "
                f"with error: {runtime.describe_exit()}",
            }
            status_word = "failure"
            reset_reason = "failure"
        elif self._dead_extension() is not None:
            dead = self._dead_extension()
            result.status = "crash"
            result.error = {
                "errorType": "Extension.Crash",
                "errorMessage": f"RequestId: {request_id} Error: extension {dead} "
                f"exited ({self.extensions[str(dead)].describe_exit()})",
            }
            status_word = "failure"
            reset_reason = "failure"
        else:
            result.status = "timeout"
            result.timed_out = self._not_in_next()
            result.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out "
                f"after {timeout:.2f} seconds",
            }
            status_word = "timeout"
            reset_reason = "timeout"
        if invocation.status is None:
            platform.emit(
                "platform.runtimeDone",
                {
                    "requestId": request_id,
                    "status": status_word,
                    "errorType": result.error["errorType"] if result.error else None,
                    "metrics": {
                        "durationMs": round((time.monotonic() - started) * 1000, 3)
                    },
                    "tracing": tracing,
                },
            )

        ended = time.monotonic()
        self._invoke_logs = None
        result.duration_ms = (ended - started) * 1000
        result.max_memory_mb = runtime.peak_rss_mb()
        metrics: dict[str, Any] = {
            "durationMs": round(result.duration_ms, 3),
            "billedDurationMs": max(1, math.ceil(result.duration_ms)),
            "memorySizeMB": self.config.memory_mb,
            "maxMemoryUsedMB": result.max_memory_mb or 0,
        }
        if self.init_durations_ms and self._is_first_invoke():
            metrics["initDurationMs"] = round(self.init_durations_ms[-1], 3)
        platform.emit(
            "platform.report",
            {
                "requestId": request_id,
                "status": status_word,
                "metrics": metrics,
                "tracing": tracing,
            },
        )
        self._invocations_in_env += 1
        if reset_reason is not None:
            result.reset = True
            result.reset_reason = reset_reason
            self._stop_environment(reset_reason, graceful=False)
        else:
            with platform.cond:
                platform.phase = "ready"
            self._freeze()
        return result

    def _not_in_next(self) -> list[str]:
        assert self.platform is not None
        platform = self.platform
        with platform.cond:
            late = [] if platform.runtime_waiting else ["runtime"]
            late += sorted(
                e.name
                for e in platform.extensions.values()
                if not (e.waiting or e.error is not None)
            )
        return late

    def _is_first_invoke(self) -> bool:
        return self._invocations_in_env == 0

    def _fill_outcome(self, result: InvocationResult, invocation: Invocation) -> None:
        body = invocation.response or b""
        result.raw = body
        if invocation.status == "success":
            try:
                result.payload = json.loads(body) if body else None
            except ValueError:
                result.payload = body.decode("utf-8", "replace")
            return
        result.status = "error"
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {"errorMessage": body.decode("utf-8", "replace")}
        if not isinstance(doc, dict):
            doc = {"errorMessage": str(doc)}
        doc.setdefault("errorType", invocation.error_type or "Runtime.Unknown")
        result.error = doc

    def _runtime_done(
        self, invocation: Invocation, status: str, tracing: dict[str, str]
    ) -> dict[str, Any]:
        duration = (invocation.responded - invocation.started) * 1000
        record: dict[str, Any] = {
            "requestId": invocation.request_id,
            "status": status,
            "metrics": {
                "durationMs": round(duration, 3),
                "producedBytes": len(invocation.response or b""),
            },
            "tracing": tracing,
        }
        if status != "success":
            record["errorType"] = invocation.error_type
        return record

    # ---------------------------------------------------- freeze, thaw, reset

    def _live(self) -> list[Child]:
        live = [c for c in self.extensions.values() if c.alive]
        if self.runtime is not None and self.runtime.alive:
            live.append(self.runtime)
        return live

    def _freeze(self) -> None:
        if not self.freeze_enabled or self.platform is None:
            return
        self.platform.set_frozen(True)
        for child in self._live():
            child.freeze()
        self.frozen = True

    def _thaw(self) -> None:
        if self.platform is None:
            return
        for child in self._live():
            child.thaw()
        self.frozen = False
        self.platform.set_frozen(False)

    def _stop_environment(self, reason: str, *, graceful: bool) -> None:
        """Stop the runtime and extensions, SHUTDOWN first to those registered."""
        assert self.platform is not None
        platform = self.platform
        self._thaw()
        platform.flush_telemetry()
        external = platform.external_registered()
        budget = SHUTDOWN_BUDGET_S if graceful else RESET_BUDGET_S
        deadline = time.monotonic() + (budget if external else 0.0)
        runtime = self.runtime
        if runtime is not None:
            if graceful and external and runtime.alive:
                # The runtime gets SIGTERM only when an external extension exists.
                runtime.signal_group(signal.SIGTERM)
                runtime.wait(min(RUNTIME_SHUTDOWN_S, deadline - time.monotonic()))
            # Also when the leader is gone: what it spawned may still run.
            runtime.kill()
        platform.send_shutdown(reason, int((time.time() + budget) * 1000))
        for child in self.extensions.values():
            if child.alive and child.name in external:
                child.wait(deadline - time.monotonic())
        for child in self.extensions.values():
            child.kill()
        platform.reset()
        self.initialized = False
        self._invocations_in_env = 0
        self.runtime = None
        self.extensions = {}


class _InitFailure(Exception):
    def __init__(
        self, error_type: str, message: str, stack: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "errorType": self.error_type,
            "errorMessage": self.message,
        }
        if self.stack:
            doc["stackTrace"] = self.stack
        return doc


__all__ = ["InvocationResult", "RequestTooLargeError", "Sandbox", "SandboxError"]
