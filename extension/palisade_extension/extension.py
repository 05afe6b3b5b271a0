"""The extension's lifecycle: prepare, register, subscribe, and the event loop.

Order matters. Before registering (so before the runtime starts) the extension
creates /tmp/palisade, writes the key, starts the socket server and loads the
policy, so the layer finds all of them at its install. Then it registers for
INVOKE and SHUTDOWN, subscribes to platform telemetry and loops on /next. On each
INVOKE it waits (bounded) for that request's record, samples the runtime from
/proc, spools the batch and gives the shipper a bounded time before calling /next.

Never break the function: a socket that cannot be created still leaves a
registered extension (the layer falls back to its JSON log line); internal errors
are logged once and the loop goes on; only a broken Extensions API ends it, with
/extension/exit/error.

Limitations: Lambda Managed Instances accept only SHUTDOWN registrations from
external extensions, and this extension registers for INVOKE too. A record the
layer never sent (timeout, crash, SIGKILL of the runtime) is only counted, as
``missing-record``; a killed extension's successor counts the invocation it was
in as ``extension-restart``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from palisade_extension import batch as batches
from palisade_extension import settings as settings_module
from palisade_extension.collector import Collector
from palisade_extension.drops import Drops
from palisade_extension.errors import LambdaApiError, PolicySourceError
from palisade_extension.lambda_api import LambdaApi
from palisade_extension.outside import SAMPLE_LIMIT_S, OutsideView, Sampler
from palisade_extension.policy_source import PolicyStore
from palisade_extension.server import RecordServer, prepare_dir, write_key
from palisade_extension.shipper import Shipper
from palisade_extension.sinks import Sink
from palisade_extension.sinks import build as build_sinks
from palisade_extension.spool import Spool
from palisade_extension.telemetry import TelemetryListener, listener_host

log = logging.getLogger(__name__)

VERSION = "0.1.0"
# What SHUTDOWN keeps for itself out of Lambda's 2 s: the runtime's share and the
# time needed to exit cleanly.
SHUTDOWN_MARGIN_S = 0.3
SHUTDOWN_CAP_S = 1.6
REPORT_WAIT_S = 0.1


class Extension:
    """One run of the extension, from prepare to SHUTDOWN."""

    def __init__(
        self,
        name: str,
        settings: dict[str, Any] | None = None,
        sinks: list[Sink] | None = None,
    ):
        self.name = name
        self.settings = settings or settings_module.load()
        self._sinks = sinks
        self.collector = Collector()
        self.server: RecordServer | None = None
        self.telemetry: TelemetryListener | None = None
        self.telemetry_ok = False
        self.shipper: Shipper | None = None
        self.spool: Spool | None = None
        self.sampler: Sampler | None = None
        self.policy = PolicyStore(
            self.settings["PALISADE_POLICY"], self.settings["PALISADE_POLICY_REFRESH_S"]
        )
        self.policy_error: str | None = None
        self.source: dict[str, str] = {}
        self.last_request: str | None = None
        self.invokes = 0
        self._logged: set[str] = set()
        spool_dir = self.settings["PALISADE_SPOOL_DIR"]
        self.drops = Drops(
            os.path.join(os.path.dirname(spool_dir) or ".", "drops.json")
        )

    # -- before register ---------------------------------------------------------

    def prepare(self) -> None:
        """Create the spool, the key, the socket server and load the policy."""
        settings = self.settings
        try:
            # First, so that /tmp/palisade is created 0700 rather than as a
            # by-product of the spool directory below it.
            prepare_dir(os.path.dirname(settings["PALISADE_EXTENSION_SOCKET"]) or ".")
        except OSError as exc:
            self._once("dir", "cannot prepare the socket directory: %s", exc)
        try:
            self.spool = Spool(
                settings["PALISADE_SPOOL_DIR"],
                settings["PALISADE_SPOOL_MAX_BYTES"],
                self.drops,
            )
            recovered = self.spool.journaled()
            for path, record in recovered:
                self.collector.add_record(record, path)
            unfinished = self.spool.inflight()
            if unfinished and unfinished not in {r["request_id"] for _, r in recovered}:
                self.drops.add("extension-restart")
                log.warning("a previous run lost the record of %s", unfinished)
            self.spool.mark_inflight(None)
        except OSError as exc:
            self._once("spool", "no spool, batches live in memory only: %s", exc)
        try:
            key = write_key(settings["PALISADE_EXTENSION_KEY"])
            self.server = RecordServer(
                settings["PALISADE_EXTENSION_SOCKET"],
                key,
                self.drops,
                self._keep_record,
                self.policy.answer,
            )
            self.server.start()
        except OSError as exc:
            self.server = None
            self._once(
                "server",
                "cannot serve the layer's socket (the layer falls back to its log "
                "line): %s",
                exc,
            )
        try:
            self.policy.load_initial()
        except PolicySourceError as exc:
            self.policy_error = str(exc)
            log.error("policy unavailable: %s", exc)

    def _keep_record(self, record: dict[str, Any], body: bytes) -> None:
        path = None
        if self.spool is not None:
            try:
                path = self.spool.journal(body)
            except OSError as exc:
                self._once("journal", "cannot journal records to the spool: %s", exc)
        self.collector.add_record(record, path)

    # -- after register ----------------------------------------------------------

    def start(self, api: LambdaApi, info: dict[str, Any]) -> None:
        """Subscribe to telemetry and start the shipper and the outside view."""
        env = os.environ
        self.source = {
            "function": str(
                info.get("functionName")
                or env.get("AWS_LAMBDA_FUNCTION_NAME")
                or "unknown"
            ),
            "version": str(
                info.get("functionVersion")
                or env.get("AWS_LAMBDA_FUNCTION_VERSION")
                or "$LATEST"
            ),
            "extension_version": VERSION,
            "sandbox_id": self._sandbox_id(),
        }
        if env.get("AWS_REGION"):
            self.source["region"] = env["AWS_REGION"]
        try:
            host = listener_host(self.settings["PALISADE_TELEMETRY_HOST"], api.address)
            self.telemetry = TelemetryListener(host, self.collector)
            self.telemetry.start()
            api.subscribe_telemetry(self.telemetry.uri)
            self.telemetry_ok = True
        except (OSError, LambdaApiError) as exc:
            self._once("telemetry", "no platform telemetry: %s", exc)
        sinks = self._sinks
        if sinks is None:
            sinks = build_sinks(self.settings["PALISADE_SINK"], self.settings)
        if not sinks:
            self._once(
                "sinks", "no usable sink configured; records are counted as dropped"
            )
        if self.spool is None:
            # Without /tmp there is still a spool in memory's place: a private dir
            # cannot be had, so delivery is tried once per batch.
            self.spool = Spool(
                os.path.join("/tmp", f"palisade-spool-{os.getpid()}"),
                self.settings["PALISADE_SPOOL_MAX_BYTES"],
                self.drops,
            )
        self.shipper = Shipper(sinks, self.spool, self.drops)
        self.shipper.kick()
        if self.settings["PALISADE_OUTSIDE_VIEW"]:
            pid_text = self.settings["PALISADE_RUNTIME_PID"]
            api_host, _, api_port = api.address.rpartition(":")
            view = OutsideView(
                int(pid_text) if pid_text.isdigit() else None,
                max(
                    SAMPLE_LIMIT_S,
                    2 * self.settings["PALISADE_OUTSIDE_BUDGET_MS"] / 1000,
                ),
                self.settings["PALISADE_OUTSIDE_MAX_ENTRIES"],
                ignore=[(api_host.strip("[]"), int(api_port))]
                if api_port.isdigit()
                else [],
            )
            self.sampler = Sampler(view)

    def _sandbox_id(self) -> str:
        import uuid

        path = os.path.join(
            os.path.dirname(self.settings["PALISADE_EXTENSION_SOCKET"]) or ".",
            "sandbox-id",
        )
        try:
            with open(path, encoding="ascii") as handle:
                value = handle.read().strip()
            if value:
                return value
        except OSError:
            pass
        value = str(uuid.uuid4())
        try:
            with open(path, "w", encoding="ascii") as handle:
                handle.write(value)
        except OSError:
            pass
        return value

    # -- events --------------------------------------------------------------------

    def on_invoke(self, event: dict[str, Any]) -> None:
        """Hold /next until the request's record is in, then ship within budget."""
        assert self.shipper is not None
        started = time.monotonic()
        request_id = str(event.get("requestId", ""))
        self.last_request = request_id
        self.invokes += 1
        deadline = self._deadline(event, started)
        if self.spool is not None:
            self.spool.mark_inflight(request_id)
        self.shipper.kick()
        self.policy.maybe_refresh()
        if self.sampler is not None:
            self.sampler.prime()

        result = self.collector.wait_for(
            request_id,
            deadline,
            self.settings["PALISADE_RECORD_WAIT_MS"] / 1000.0,
            self.telemetry_ok,
        )
        if not result.record and self.collector.layer_seen:
            self.drops.add("missing-record")
            log.info(
                "no record for %s (%s, runtime %s)",
                request_id,
                result.reason,
                result.runtime_done,
            )

        ticket = self.ship(request_id, deadline)
        if ticket is not None:
            budget = min(
                self.settings["PALISADE_SHIP_WAIT_MS"] / 1000.0,
                deadline - time.monotonic(),
            )
            self.shipper.wait(ticket, budget)
        if self.spool is not None:
            self.spool.mark_inflight(None)

    def _deadline(self, event: dict[str, Any], started: float) -> float:
        margin = self.settings["PALISADE_DEADLINE_MARGIN_MS"] / 1000.0
        deadline_ms = event.get("deadlineMs")
        if not isinstance(deadline_ms, (int, float)):
            return started + 3.0
        return started + (deadline_ms / 1000.0 - time.time()) - margin

    def ship(self, request_id: str | None, deadline: float | None = None) -> int | None:
        """Batch what has arrived, spool it and wake the shipper; None if empty."""
        assert self.shipper is not None and self.spool is not None
        records, journals, platform = self.collector.take()
        outside: list[dict[str, Any]] = []
        if self.sampler is not None:
            ticket = self.sampler.request(records, request_id)
            budget = self.settings["PALISADE_OUTSIDE_BUDGET_MS"] / 1000
            if deadline is not None:
                budget = min(budget, deadline - time.monotonic())
            self.sampler.wait(ticket, budget)
            outside = self.sampler.take()
        drops = self.drops.take()
        if batches.is_empty(records, platform, outside, drops):
            return None
        batch = batches.build(self.source, records, platform, outside, drops)
        if not self.shipper.sinks:
            self.drops.add("no-sink", len(records))
            for path in journals:
                self.spool.remove(path)
            return None
        ticket = self.shipper.submit(batch)
        for path in journals:
            self.spool.remove(path)
        return ticket

    def on_shutdown(self, event: dict[str, Any]) -> None:
        """Flush what is left within Lambda's shutdown budget."""
        started = time.monotonic()
        deadline_ms = event.get("deadlineMs")
        remaining = SHUTDOWN_CAP_S
        if isinstance(deadline_ms, (int, float)):
            remaining = min(
                remaining, deadline_ms / 1000.0 - time.time() - SHUTDOWN_MARGIN_S
            )
        end = started + max(0.0, remaining)
        if self.last_request and self.telemetry_ok:
            self.collector.wait_platform(
                self.last_request, "platform.report", min(REPORT_WAIT_S, remaining / 4)
            )
        if self.shipper is not None:
            ticket = self.ship(None, end) or self.shipper.kick()
            self.shipper.wait(ticket, end - time.monotonic())
            left = self.shipper.pending()
            if left:
                log.warning("%d batches still spooled at shutdown", left)

    def close(self) -> None:
        for closer in (self.server, self.telemetry):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:
                    self._once("close", "error while closing: %r", exc)
        if self.shipper is not None:
            self.shipper.stop()

    def _once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.error(message, *args)


def configure_logging(level: str) -> None:
    """Send the package's log lines to stderr (CloudWatch in Lambda)."""
    logger = logging.getLogger("palisade_extension")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "[palisade-extension] %(levelname)s %(name)s: %(message)s"
            )
        )
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def run(name: str, settings: dict[str, Any] | None = None) -> int:
    """Run the extension until SHUTDOWN; returns the process exit status."""
    settings = settings or settings_module.load()
    _start_thread_excepthook()
    try:
        api = LambdaApi(os.environ.get("AWS_LAMBDA_RUNTIME_API", ""))
    except LambdaApiError as exc:
        log.error("%s", exc)
        return 1
    extension = Extension(name, settings)
    try:
        extension.prepare()
    except Exception as exc:  # still register: an unregistered extension fails init
        log.exception("internal error while preparing: %r", exc)

    try:
        info = api.register(name, ["INVOKE", "SHUTDOWN"])
    except LambdaApiError as exc:
        log.error("%s", exc)
        extension.close()
        return 1
    if extension.policy_error and settings["PALISADE_ON_ERROR"] == "closed":
        api.report_error("init", "Palisade.PolicyUnavailable", extension.policy_error)
        extension.close()
        return 1
    try:
        extension.start(api, info)
    except Exception as exc:
        log.exception("internal error while starting")
        api.report_error("init", "Palisade.StartFailed", repr(exc))
        extension.close()
        return 1
    return loop(api, extension)


def loop(api: LambdaApi, extension: Extension) -> int:
    """Serve events until SHUTDOWN (0) or a broken Extensions API (1)."""
    failures = 0
    while True:
        try:
            event = api.next_event()
            failures = 0
        except LambdaApiError as exc:
            failures += 1
            if failures >= 3:
                log.error("giving up on the Extensions API: %s", exc)
                api.report_error("exit", "Palisade.NextFailed", str(exc))
                extension.close()
                return 1
            time.sleep(0.05 * failures)
            continue
        kind = str(event.get("eventType", "")).upper()
        try:
            if kind == "INVOKE":
                extension.on_invoke(event)
            elif kind == "SHUTDOWN":
                extension.on_shutdown(event)
                extension.close()
                return 0
        except Exception as exc:  # fail open: the next invoke still gets served
            extension._once(
                f"event-{type(exc).__name__}", "internal error on %s: %r", kind, exc
            )


def _start_thread_excepthook() -> None:
    def hook(args: threading.ExceptHookArgs) -> None:
        log.error("internal error in thread %s: %r", args.thread, args.exc_value)

    threading.excepthook = hook
