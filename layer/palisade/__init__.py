"""Palisade: runtime protection for Python AWS Lambda functions.

    import palisade
    palisade.install()                 # or AWS_LAMBDA_EXEC_WRAPPER + redirect

    @palisade.protect                  # or protect(mode="block", policy=...)
    def handler(event, context): ...

Everything else is internal; see docs/layer.md.
"""

from __future__ import annotations

from .config import Settings, load_settings
from .errors import BlockedError, ConfigError, PalisadeError, PolicyError
from .guard import Guard, current, install
from .record import LAYER_VERSION as __version__
from .wrapper import protect

__all__ = [
    "BlockedError",
    "ConfigError",
    "Guard",
    "PalisadeError",
    "PolicyError",
    "Settings",
    "__version__",
    "current",
    "install",
    "load_settings",
    "protect",
]
