"""Installing Palisade: settings, policy, audit hook, patches, and delivery.

``install()`` is the one entry point; a second call is a logged no-op that returns
the running guard. It reads the settings, loads the policy (from a file, the
text itself, or the extension), adds the audit hook, applies the patches and
opens the INIT record. ``finish()`` turns a finished invocation into a record and
delivers it: to the extension's socket, else to ``PALISADE_OUTPUT``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from . import attribution, context, hook, names, observers, patches, record
from .config import Settings, load_settings
from .errors import PolicyError, TransportError
from .output import Output
from .transport import Client, read_key

logger = logging.getLogger("palisade")
logger.addHandler(logging.NullHandler())

_lock = threading.Lock()
_hook_added = False


@dataclass
class Guard:
    """The installed guard: what install resolved, and delivery counters."""

    settings: Settings
    engine: Any
    output: Output
    client: Client | None
    policy_source: str | None
    policy_error: list[dict[str, str]] | None = None
    fallbacks: int = 0
    records: int = 0
    cold: bool = True
    init_closed: bool = False
    patches: list[str] = field(default_factory=list)

    def deliver(self, message: dict[str, Any]) -> str:
        """Send one record to the extension, or write it to the output.

        Returns where it went: ``extension``, ``output`` or ``lost``.
        """
        with hook.quiet():
            if self.client is not None:
                try:
                    reply = self.client.request({"type": "record", "record": message})
                    if reply.get("type") == "ack":
                        self.records += 1
                        return "extension"
                    raise TransportError(f"extension answered {reply.get('type')!r}")
                except TransportError as exc:
                    logger.info("record not delivered to the extension: %s", exc)
            self.fallbacks += 1
            try:
                self.output.write(message)
                self.records += 1
                return "output"
            except OSError:
                hook.internal_error("output")
                return "lost"

    def finish(
        self,
        invocation: context.Invocation,
        outcome: str,
        error_type: str | None = None,
    ) -> dict[str, Any]:
        """Build and deliver the record of ``invocation``; return it."""
        extra = None
        if invocation.request_id == context.INIT and self.policy_error:
            extra = {"policy_error": self.policy_error}
        with hook.quiet():
            built = record.build(
                invocation,
                function=self.settings.function_name,
                version=self.settings.function_version,
                outcome=outcome,
                error_type=error_type,
                mode=self.engine.mode,
                policy_id=self.engine.policy_id,
                fallbacks=self.fallbacks,
                extra=extra,
            )
        self.deliver(built)
        return built

    def close_init(self) -> dict[str, Any] | None:
        """Deliver the INIT record once (at the end of import, or first invoke)."""
        init = context.close_init()
        if init is None:
            return None
        self.init_closed = True
        return self.finish(init, "init")


_guard: Guard | None = None


def current() -> Guard | None:
    """The installed guard, or None before install."""
    return _guard


def _configure_logging(level: str | None) -> None:
    if level is None:
        return
    logger.setLevel(level)
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("palisade %(levelname)s %(name)s: %(message)s")
        )
        logger.addHandler(handler)


def _policy_from_extension(client: Client | None) -> Any:
    if client is None:
        raise PolicyError(
            "PALISADE_POLICY is 'extension' but no extension key was found; "
            "expected the extension to write its key file before the function starts"
        )
    try:
        reply = client.request({"type": "policy"})
    except TransportError as exc:
        raise PolicyError(
            f"PALISADE_POLICY is 'extension' but the extension did not answer: {exc}"
        ) from exc
    if reply.get("type") != "policy":
        raise PolicyError(
            f"extension answered a policy request with {reply.get('type')!r}; "
            "expected 'policy'"
        )
    return reply.get("policy")


def _load_engine(settings: Settings, client: Client | None) -> tuple[Any, Any]:
    """(engine, policy_error issues or None), honouring PALISADE_ON_ERROR."""
    from .policy import load_engine

    # Everything is passed explicitly; without PALISADE_POLICY in its env the
    # engine cannot re-read the policy the settings already resolved.
    env = {k: v for k, v in os.environ.items() if k != "PALISADE_POLICY"}
    try:
        source = settings.policy
        if source == "extension":
            source = _policy_from_extension(client)
        engine = load_engine(source, mode=settings.mode, on_error="closed", env=env)
        return engine, None
    except PolicyError as exc:
        if settings.on_error == "closed":
            raise
        issues = [{"path": path, "message": message} for path, message in exc.issues]
        if not issues:
            issues = [{"path": "$", "message": str(exc)}]
        logger.warning(
            "policy unusable, running with built-in rules in monitor mode: %s", exc
        )
        engine = load_engine(None, mode="monitor", on_error="closed", env=env)
        return engine, issues


def install(**overrides: Any) -> Guard:
    """Install Palisade in this process (idempotent).

    Args:
        overrides: settings by field name (``mode``, ``policy``, ``output``, ...);
            each wins over its PALISADE_* variable.

    Returns:
        The running :class:`Guard`.

    Raises:
        ConfigError: a setting has a bad value.
        PolicyError: the policy is unusable and ``on_error`` is ``closed``.
    """
    global _guard, _hook_added
    with _lock:
        if _guard is not None:
            logger.info("palisade is already installed; install() ignored")
            return _guard
        settings = load_settings(overrides)
        _configure_logging(settings.log_level)

        with hook.quiet():
            client = None
            try:
                key = read_key(settings.extension_key)
            except TransportError as exc:
                logger.warning("%s; records go to %s", exc, settings.output)
                key = None
            if key is not None:
                client = Client(
                    settings.extension_socket, key, settings.transport_timeout_ms
                )
            engine, policy_error = _load_engine(settings, client)
            output = Output(settings.output)
            if policy_error:
                try:
                    output.write({"palisade": "policy-error", "issues": policy_error})
                except OSError:
                    hook.internal_error("output")

            context.reset(settings.max_events)
            base = getattr(engine, "base", None)
            observers.configure(tuple(getattr(base, "import_dirs", ())))
            guard = Guard(
                settings=settings,
                engine=engine,
                output=output,
                client=client,
                policy_source=settings.policy
                if isinstance(settings.policy, str)
                else None,
                policy_error=policy_error,
            )
            applied = patches.apply_all()
            guard.patches = applied
            attribution.refresh()
            hook.activate(
                engine,
                output,
                observers.DISPATCH,
                settings.attribution,
                settings.function_name,
            )
            if not _hook_added:
                sys.addaudithook(hook.audit_hook)
                atexit.register(_at_exit)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_after_fork)
                _hook_added = True
        _guard = guard
        logger.info(
            "palisade installed: mode %s, policy %s, patches %s",
            engine.mode,
            engine.policy_id,
            applied,
        )
        return guard


def _after_fork() -> None:
    """In a forked child: never share the parent's extension connection.

    A worker forked by the runtime (multi-concurrency mode) or by the function
    opens its own connection on its next record; the locks are new because a
    parent thread may have held them at the fork.
    """
    active = _guard
    if active is None:
        return
    if active.client is not None:
        active.client.forget()
    active.output.after_fork()


def _at_exit() -> None:
    """Deliver the INIT record of a process that never ran an invocation.

    Limitation: events recorded after the last invocation ended (by threads
    still running) wait for an invocation that never comes and are not delivered.
    """
    active = _guard
    if active is None:
        return
    try:
        active.close_init()
    except Exception:
        logger.warning(
            "palisade could not deliver the INIT record at exit", exc_info=True
        )


def _reset_for_tests() -> None:
    """Make the guard inert so that install() can run again (tests only).

    The audit hook stays registered (hooks cannot be removed) but does nothing
    until the next install; patches stay applied and are inert too.
    """
    global _guard
    with _lock:
        hook.deactivate()
        if _guard is not None:
            if _guard.client is not None:
                _guard.client.close()
            _guard.output.close()
        _guard = None
        names.clear()
