"""Settings: one table, parsed with precise errors, documented as generated."""

from __future__ import annotations

from pathlib import Path

import pytest
from palisade.errors import ConfigError
from palisade_analyzer.settings import SETTINGS, Settings, load_settings, markdown_table
from palisade_analyzer.signing import KeyRing

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_documented_table_is_the_generated_one():
    """docs/configuration.md carries markdown_table() verbatim."""
    assert markdown_table() in DOC.read_text()


def test_defaults_and_fields_agree():
    """Each default is the dataclass default; names start PALISADE_ANALYZER_."""
    defaults = Settings()
    for setting in SETTINGS:
        assert setting.env.startswith("PALISADE_ANALYZER_")
        assert getattr(defaults, setting.field) == setting.default
    assert load_settings({}) == defaults


def test_environment_and_explicit_values(clean_env):
    """The environment overrides defaults; explicit arguments override both."""
    env = {
        "PALISADE_ANALYZER_LEARN_MIN_INVOCATIONS": "7",
        "PALISADE_ANALYZER_SINKS": "stdout, file:/tmp/a.jsonl",
        "PALISADE_ANALYZER_BACKEND": "AWS",
    }
    got = load_settings(env, learn_min_invocations=3)
    assert got.learn_min_invocations == 3
    assert got.sinks == ("stdout", "file:/tmp/a.jsonl")
    assert got.backend == "aws"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PALISADE_ANALYZER_MAX_BATCH_BYTES", "0"),
        ("PALISADE_ANALYZER_RARE_FRACTION", "2"),
        ("PALISADE_ANALYZER_BACKEND", "mysql"),
        ("PALISADE_ANALYZER_SINKS", "carrier-pigeon:x"),
        ("PALISADE_ANALYZER_LEARN_QUIET_SECONDS", "soon"),
    ],
)
def test_bad_values_name_variable_value_and_expectation(name, value):
    """A bad value raises ConfigError naming the variable, the value and the choices."""
    with pytest.raises(ConfigError) as err:
        load_settings({name: value})
    assert name in str(err.value) and repr(value) in str(err.value)
    assert "expected" in str(err.value)


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ('{"keys": "none"}', 'expected an object {"keys": [...]}'),
        (
            '{"keys": [{"id": "a", "secret": "short", "functions": ["f"]}]}',
            "at least 16 characters",
        ),
        (
            '{"keys": [{"id": "a", "secret": "long-enough-secret", "functions": []}]}',
            "non-empty list",
        ),
        ("{not json", "not valid JSON"),
        ("/nonexistent/keys.json", "cannot be read"),
    ],
)
def test_bad_keys_documents(spec, text):
    """Keys documents are checked field by field with a message saying what to fix."""
    with pytest.raises(ConfigError, match=text.replace("[", r"\[").replace("{", r"\{")):
        KeyRing.load(spec)


def test_keys_from_file_and_inline(tmp_path):
    """The same document works inline and from a file; globs bind functions."""
    doc = '{"keys": [{"id": "k", "secret": "0123456789abcdef", "functions": ["a-*"]}]}'
    path = tmp_path / "keys.json"
    path.write_text(doc)
    for ring in (KeyRing.load(doc), KeyRing.load(str(path))):
        key = ring.get("k")
        assert key is not None and key.allows("a-1") and not key.allows("b")
    assert len(KeyRing.load("")) == 0


def test_ingestor_reads_the_environment_by_default(sqlite_store, clean_env):
    """Without explicit settings the ingestor follows PALISADE_ANALYZER_*."""
    from palisade_analyzer.ingest import Ingestor

    clean_env.setenv("PALISADE_ANALYZER_LEARN_MIN_INVOCATIONS", "4")
    assert Ingestor(sqlite_store, KeyRing()).settings.learn_min_invocations == 4
    explicit = Settings(learn_min_invocations=9)
    assert Ingestor(sqlite_store, KeyRing(), explicit).settings is explicit
