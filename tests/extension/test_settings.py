"""The extension's settings table: parsing, defaults and its documentation."""

from __future__ import annotations

import os

from ext_fakes import REPO
from palisade_extension import settings


def test_defaults():
    """With nothing set, every setting has its documented default."""
    values = settings.load({})
    assert values["PALISADE_SINK"] == ("http",)
    assert values["PALISADE_SPOOL_DIR"] == "/tmp/palisade/spool"
    assert values["PALISADE_RECORD_WAIT_MS"] == 300
    assert values["PALISADE_OUTSIDE_VIEW"] is True


def test_bad_value_is_reported_and_default_used(caplog):
    """A bad value names the variable, the value and what was expected."""
    values = settings.load({"PALISADE_SPOOL_MAX_BYTES": "lots", "PALISADE_SINK": "ftp"})
    assert values["PALISADE_SPOOL_MAX_BYTES"] == 32 * 1024 * 1024
    assert values["PALISADE_SINK"] == ("http",)
    assert "PALISADE_SPOOL_MAX_BYTES='lots'" in caplog.text
    assert "expected http, otlp" in caplog.text


def test_spool_follows_the_socket_directory():
    """Unset PALISADE_SPOOL_DIR puts the spool beside the socket."""
    values = settings.load({"PALISADE_EXTENSION_SOCKET": "/x/y/extension.sock"})
    assert values["PALISADE_SPOOL_DIR"] == "/x/y/spool"


def test_sink_list_and_switches():
    """PALISADE_SINK takes a comma list; switches accept on/off."""
    values = settings.load(
        {
            "PALISADE_SINK": "http, file:/tmp/a.jsonl ,otlp",
            "PALISADE_OUTSIDE_VIEW": "off",
        }
    )
    assert values["PALISADE_SINK"] == ("http", "file:/tmp/a.jsonl", "otlp")
    assert values["PALISADE_OUTSIDE_VIEW"] is False


def test_documentation_table_matches_the_code():
    """docs/configuration.md holds the table the code generates."""
    path = os.path.join(REPO, "docs", "configuration.md")
    with open(path) as handle:
        assert settings.markdown_table() in handle.read()
