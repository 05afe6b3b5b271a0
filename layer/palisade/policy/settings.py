"""How :func:`palisade.policy.load_engine` reads PALISADE_* when used on its own.

The installed layer resolves these variables with its own settings
(``palisade.config``) and passes the results explicitly; this table is what the
engine applies when it is given an environment instead.

- ``PALISADE_POLICY`` (unset): the policy, as a file path, inline JSON or YAML
  text, or ``extension``.
- ``PALISADE_MODE`` (``monitor``): the default mode when neither the caller nor the
  policy sets one.
- ``PALISADE_ON_ERROR`` (``open``): what an unloadable policy means: ``open``
  runs with the built-in rules only in monitor mode; ``closed`` (synonym
  ``raise``) raises PolicyError so the function does not start unprotected.

An explicit argument to :func:`palisade.policy.load_engine` wins over the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from palisade.errors import ConfigError

MODES = ("monitor", "alert", "block")
ON_ERROR_CHOICES = ("open", "closed", "raise")
POLICY_FROM_EXTENSION = "extension"


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ConfigError(
                f"{name}={text!r} is not valid; expected one of {', '.join(choices)}"
            )
        return value

    return parse


def _text(text: str) -> str | None:
    return text if text.strip() else None


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, how it is parsed and what it does."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str

    def read(self, env: Mapping[str, str]) -> Any:
        """The parsed value from ``env``, or the default when unset or empty.

        Raises:
            ConfigError: the value is not one the setting accepts.
        """
        raw = env.get(self.name)
        if raw is None or not raw.strip():
            return self.default
        return self.parse(raw)


POLICY = Setting(
    "PALISADE_POLICY",
    None,
    _text,
    "The policy: a path to a .json/.yaml file, inline JSON or YAML text, or "
    "'extension' (the layer asks the extension for it at init).",
)
MODE = Setting(
    "PALISADE_MODE",
    "monitor",
    _choice("PALISADE_MODE", MODES),
    "Default mode (monitor, alert, block) when the caller and the policy set none.",
)
ON_ERROR = Setting(
    "PALISADE_ON_ERROR",
    "open",
    _choice("PALISADE_ON_ERROR", ON_ERROR_CHOICES),
    "When the policy cannot be loaded: 'open' runs with the built-in rules only, "
    "in monitor mode; 'closed' (or 'raise') raises PolicyError.",
)

SETTINGS: tuple[Setting, ...] = (POLICY, MODE, ON_ERROR)
