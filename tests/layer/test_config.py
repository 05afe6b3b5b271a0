"""The settings table: defaults, explicit arguments over the environment, errors
that name the variable, and the documentation listing every variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from palisade.config import SETTINGS, load_settings
from palisade.errors import ConfigError


def test_defaults() -> None:
    """With nothing set, the documented defaults apply."""
    s = load_settings(environ={})
    assert (s.mode, s.on_error, s.output, s.attribution) == (
        None,
        "open",
        "stdout",
        True,
    )
    assert s.extension_socket == "/tmp/palisade/extension.sock"
    assert s.extension_key == "/tmp/palisade/extension.key"
    assert (s.function_name, s.function_version) == ("local", "$LATEST")


def test_environment_and_explicit_arguments() -> None:
    """The environment sets values; an explicit argument wins over it."""
    env = {
        "PALISADE_MODE": "Alert",
        "PALISADE_MAX_EVENTS": "10",
        "PALISADE_ATTRIBUTION": "off",
        "PALISADE_OUTPUT": "file:/tmp/x.jsonl",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_VERSION": "7",
    }
    s = load_settings(environ=env)
    assert (s.mode, s.max_events, s.attribution, s.output) == (
        "alert",
        10,
        False,
        "file:/tmp/x.jsonl",
    )
    assert (s.function_name, s.function_version) == ("orders", "7")
    s = load_settings(
        {"mode": "block", "max_events": 5, "function_name": "x"}, environ=env
    )
    assert (s.mode, s.max_events, s.function_name) == ("block", 5, "x")
    assert load_settings({"policy": {"version": 1}}, environ={}).policy == {
        "version": 1
    }


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PALISADE_MODE", "strict", "monitor, alert or block"),
        ("PALISADE_ON_ERROR", "maybe", "open or closed"),
        ("PALISADE_OUTPUT", "stderr", "'stdout' or 'file:PATH'"),
        ("PALISADE_MAX_EVENTS", "-1", "a positive integer"),
        ("PALISADE_TRANSPORT_TIMEOUT_MS", "soon", "a positive integer"),
        ("PALISADE_ATTRIBUTION", "sometimes", "on or off"),
        ("PALISADE_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ],
)
def test_bad_values_name_variable_value_and_expectation(
    variable: str, value: str, expected: str
) -> None:
    """A bad value raises ConfigError with the variable, the value and what fits."""
    with pytest.raises(ConfigError) as info:
        load_settings(environ={variable: value})
    message = str(info.value)
    assert variable in message and repr(value) in message
    assert expected in message


def test_unknown_argument() -> None:
    """An override that names no setting is refused."""
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"colour": "red"}, environ={})


def test_docs_list_every_setting() -> None:
    """docs/configuration.md names every variable in the table."""
    doc = (
        Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    ).read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in doc, setting.env
