"""The redirect entry point: ``_HANDLER=palisade.handler.handler``.

Importing this module installs Palisade first, loads the policy, then imports the
function's real handler (``PALISADE_HANDLER``, set by the exec wrapper from the
original ``_HANDLER``), so everything the function's modules do at import is in
the INIT record. The INIT record is delivered when this import ends.

A missing or bad handler fails the way Lambda fails without Palisade: with the
runtime's own ``Runtime.MalformedHandlerName``, ``Runtime.ImportModuleError``,
``Runtime.UserCodeSyntaxError`` or ``Runtime.HandlerNotFound`` error when the
runtime client is loaded, else with ValueError, ImportError, SyntaxError or
AttributeError carrying the same message.

Environment: PALISADE_HANDLER (and every setting of :mod:`palisade.config`).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import guard
from .config import load_settings
from .errors import ConfigError, PolicyError
from .wrapper import protect

logger = logging.getLogger(__name__)

_FAULT_MODULE = "awslambdaric.lambda_runtime_exception"


def _fault(kind: str, message: str, fallback: type[BaseException]) -> BaseException:
    module = sys.modules.get(_FAULT_MODULE)
    fault = getattr(module, "FaultException", None)
    if fault is not None and hasattr(fault, kind):
        return fault(getattr(fault, kind), message)
    return fallback(message)


def load_handler(name: str | None) -> Callable[..., Any]:
    """Import ``module.function`` the way the Lambda runtime does.

    Raises:
        The runtime's FaultException when available, else ValueError (malformed
        name), ImportError, SyntaxError or AttributeError (no such handler).
    """
    if not name:
        raise _fault(
            "MALFORMED_HANDLER_NAME",
            "Bad handler '': PALISADE_HANDLER is not set; expected the function's "
            "handler (module.function), which the exec wrapper copies from _HANDLER",
            ValueError,
        )
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as exc:
        raise _fault(
            "MALFORMED_HANDLER_NAME",
            f"Bad handler '{name}': {exc}",
            ValueError,
        ) from exc
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise _fault(
            "BUILT_IN_MODULE_CONFLICT",
            f"Cannot use built-in module {module_name} as a handler module",
            ImportError,
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _fault(
            "IMPORT_MODULE_ERROR",
            f"Unable to import module '{module_name}': {exc}",
            ImportError,
        ) from exc
    except SyntaxError as exc:
        fault = _fault(
            "USER_CODE_SYNTAX_ERROR",
            f"Syntax error in module '{module_name}': {exc}",
            SyntaxError,
        )
        if isinstance(fault, SyntaxError):
            raise
        raise fault from exc
    try:
        target = getattr(module, function_name)
    except AttributeError as exc:
        raise _fault(
            "HANDLER_NOT_FOUND",
            f"Handler '{function_name}' missing on module '{module_name}'",
            AttributeError,
        ) from exc
    return target


def _install() -> bool:
    try:
        guard.install()
        return True
    except (ConfigError, PolicyError):
        raise
    except Exception:
        logger.warning(
            "palisade failed to install; the function runs unprotected", exc_info=True
        )
        return False


_installed = _install()
_target = load_handler(load_settings().handler)
handler = protect(_target) if _installed else _target

if _installed:
    active = guard.current()
    if active is not None:
        try:
            active.close_init()
        except Exception:
            logger.warning("palisade could not deliver the INIT record", exc_info=True)
