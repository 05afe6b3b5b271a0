"""The extension's exceptions.

    ExtensionError          base of what the extension raises on its own behalf
    ├── ConfigError         a PALISADE_* setting has a bad value
    ├── PolicySourceError   the policy could not be fetched, parsed or validated
    ├── FrameError          a frame from the layer is malformed, unsigned or replayed
    ├── LambdaApiError      the Extensions or Telemetry API refused a call
    └── SinkError           a sink could not take a batch (it is spooled and retried)

The layer has its own tree in ``palisade.errors``; the extension does not import the
layer package, so that nothing of the in-process guard runs in this process.
"""

from __future__ import annotations


class ExtensionError(Exception):
    """Base class of the extension's own errors."""


class ConfigError(ExtensionError, ValueError):
    """A setting has a value outside what it accepts."""


class PolicySourceError(ExtensionError):
    """The policy named by PALISADE_POLICY is unavailable or invalid."""


class FrameError(ExtensionError):
    """A frame broke the socket protocol.

    Attributes:
        reason: the drop reason it is counted under (``auth``, ``malformed``).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class LambdaApiError(ExtensionError):
    """The Extensions or Telemetry API answered with an error or not at all."""


class SinkError(ExtensionError):
    """A sink did not accept a batch.

    Attributes:
        permanent: True when re-sending the same batch cannot succeed.
    """

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent
