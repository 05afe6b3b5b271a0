"""The incident-response commands, through the `palisade` dispatcher: output,
exit codes, one-line errors, both backends."""

from __future__ import annotations

import json

import pytest
from analyzer_records import FUNCTION, KEYS_DOC, TEST_SETTINGS, Recorder, send
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.schemas import first_error, validator
from palisade_analyzer.signing import KeyRing
from palisade_analyzer.sqlite_store import SQLiteStore
from palisade_cli.main import main


def _populate(store):
    ing = Ingestor(store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS)
    rec = Recorder()
    send(ing, rec.batch([rec.benign(i) for i in range(20)]))
    attack = rec.malicious()
    send(ing, rec.batch([attack]))
    return attack


@pytest.fixture
def db(tmp_path, clean_env):
    """A database with a learned profile and one attack; its request id."""
    path = tmp_path / "analyzer.db"
    store = SQLiteStore(str(path))
    attack = _populate(store)
    store.close()
    return str(path), attack["request_id"]


def _one_line_error(capsys, code, expected_code=2):
    assert code == expected_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_profile_text_and_json(db, capsys):
    """`palisade profile` shows state, rates and signatures; --json is the view."""
    path, _ = db
    assert main(["profile", FUNCTION, "--db", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{FUNCTION} version 1: stable, 21 invocation(s)")
    assert "process:/usr/bin/convert -resize  [app]" in out
    assert "process:/bin/sh -c  [app] (after learning)" in out
    assert main(["profile", FUNCTION, "--db", path, "--json", "--version", "1"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["state"] == "stable" and view["rates"]["processes"]["median"] == 1


def test_alerts_text_json_and_filters(db, capsys):
    """`palisade alerts` lists both alerts; --since in the future lists none."""
    path, _ = db
    assert main(["alerts", "--db", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and any(
        "CRITICAL thumbnailer v1 process:/bin/sh -c x1" in x for x in lines
    )
    assert main(["alerts", "--db", path, "--json", "--function", FUNCTION]) == 0
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {d["severity"] for d in docs} == {"critical", "high"}
    assert main(["alerts", "--db", path, "--since", "2030-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["alerts", "--db", path, "--format", "ocsf", "--since", "0"]) == 0
    assert {
        json.loads(x)["class_uid"] for x in capsys.readouterr().out.splitlines()
    } == {2004}


def test_trail_of_one_request(db, capsys):
    """`palisade trail --request-id` prints the invocation's timeline in order."""
    path, rid = db
    assert main(["trail", FUNCTION, "--db", path, "--request-id", rid]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"request {rid} version 1")
    assert "process spawn    /bin/sh -c convert" in out[1]
    assert "[app] alerted (builtin:shell-spawn)" in out[1]
    assert "network connect  evil.example.net:80" in out[3]
    assert main(["trail", FUNCTION, "--db", path, "--request-id", rid, "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [e["seq"] for e in view["invocations"][0]["timeline"]] == [0, 1, 2]


def test_trail_limit_keeps_the_most_recent(db, capsys):
    """--limit 2 prints the two most recent invocations, the attack last."""
    path, rid = db
    assert main(["trail", FUNCTION, "--db", path, "--limit", "2", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert len(view["invocations"]) == 2
    assert view["invocations"][-1]["request_id"] == rid
    assert all(inv["timeline"] for inv in view["invocations"])


def test_policy_suggest_to_file(db, tmp_path, capsys):
    """`palisade policy suggest --output` writes a schema-valid staged policy."""
    path, _ = db
    out = tmp_path / "policy.json"
    code = main(
        [
            "policy",
            "suggest",
            FUNCTION,
            "--db",
            path,
            "--stage",
            "alert-new",
            "--min-invocations",
            "5",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    assert first_error(validator("policy.schema.json"), doc) is None
    assert doc["mode"] == "alert" and doc["evidence"]["min_invocations"] == 5
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["profile"], "the following arguments are required: function"),
        (["alerts", "--since", "someday"], "--since"),
        (["trail", FUNCTION, "--since", "yesterday-ish"], "--since"),
        (["trail", FUNCTION, "--limit", "0"], "at least 1"),
        (["policy", "suggest", FUNCTION, "--stage", "yolo"], "invalid choice"),
        (["policy", "suggest", FUNCTION, "--min-invocations", "0"], "at least 1"),
        (["analyzer"], "expected a subcommand: serve"),
        (["analyzer", "start"], "expected serve"),
        (["analyzer", "serve", "--port", "70000"], "0..65535"),
        (["analyzer", "serve", "--sink", "pigeon:x"], "expected stdout"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(db, capsys, argv, text):
    """Bad arguments: exit 2 and one line naming the problem."""
    path, _ = db
    full = argv if argv == ["analyzer"] else [*argv, "--db", path]
    err = _one_line_error(capsys, main(full))
    assert text in err


def test_missing_database_and_unknown_function(tmp_path, db, capsys, clean_env):
    """No such database: exit 2; no such function: exit 1, both one line."""
    missing = str(tmp_path / "nope.db")
    err = _one_line_error(capsys, main(["profile", FUNCTION, "--db", missing]))
    assert "no analyzer database" in err
    path, _ = db
    err = _one_line_error(capsys, main(["profile", "ghost", "--db", path]), 1)
    assert "no profile for 'ghost'" in err
    err = _one_line_error(capsys, main(["trail", "ghost", "--db", path]), 1)
    assert "nothing recorded" in err
    err = _one_line_error(capsys, main(["policy", "suggest", "ghost", "--db", path]), 1)
    assert "no profile" in err


def test_default_db_from_environment(db, capsys, clean_env):
    """PALISADE_ANALYZER_DB names the database when --db is absent."""
    path, _ = db
    clean_env.setenv("PALISADE_ANALYZER_DB", path)
    assert main(["alerts"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_commands_on_the_aws_backend(aws_env, capsys, clean_env):
    """--backend aws --table-prefix --bucket reads DynamoDB + S3 (moto)."""
    from moto import mock_aws
    from palisade_analyzer.aws_store import AWSStore

    with mock_aws():
        store = AWSStore(table_prefix="cli-", bucket="cli-trail", region="us-east-1")
        store.create_tables()
        attack = _populate(store)
        aws = [
            "--backend",
            "aws",
            "--table-prefix",
            "cli-",
            "--bucket",
            "cli-trail",
            "--region",
            "us-east-1",
        ]
        assert main(["profile", FUNCTION, *aws]) == 0
        assert "stable, 21 invocation(s)" in capsys.readouterr().out
        assert main(["alerts", *aws]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
        assert (
            main(["trail", FUNCTION, "--request-id", attack["request_id"], *aws]) == 0
        )
        assert "/bin/sh -c" in capsys.readouterr().out
        assert main(["policy", "suggest", FUNCTION, *aws]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert first_error(validator("policy.schema.json"), doc) is None
        err = _one_line_error(capsys, main(["alerts", "--backend", "aws"]))
        assert "needs a trail bucket" in err


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"id": "k", "secret": "short-pass", "functions": ["f"]}, "'secret'"),
        ({"id": "k", "secret": 12345678901234567, "functions": ["f"]}, "'secret'"),
        ({"id": "k", "secret": "a-long-enough-secret-value"}, "'functions'"),
        ({"id": "k", "secret": "a-long-enough-secret-value", "functions": [""]}, ""),
    ],
)
def test_bad_keys_file_never_prints_a_secret(db, tmp_path, capsys, entry, field):
    """A bad keys entry is named by its id and field; its secret never appears."""
    path, _ = db
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [entry]}))
    argv = ["analyzer", "serve", "--db", path, "--keys", str(keys), "--port", "0"]
    err = _one_line_error(capsys, main(argv))
    assert str(entry["secret"]) not in err
    assert "id 'k'" in err and field in err and str(keys) in err


@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "suggest", FUNCTION],
        ["profile", FUNCTION],
        ["analyzer", "serve", "--port", "0"],
    ],
)
@pytest.mark.parametrize("content", [b"# not a database\n" * 50, bytes(range(256)) * 8])
def test_non_sqlite_database_is_one_line(
    tmp_path, capsys, clean_env, no_serving, argv, content
):
    """A --db file that is not SQLite: exit 2, one line naming path and fault."""
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(content)
    err = _one_line_error(capsys, main([*argv, "--db", str(bogus)]))
    assert str(bogus) in err and "not a database" in err
    assert bogus.read_bytes() == content


@pytest.fixture
def no_serving(monkeypatch):
    """A serve that got past its checks returns at once instead of serving."""
    from palisade_analyzer.server import AnalyzerServer

    monkeypatch.setattr(AnalyzerServer, "serve_forever", lambda self, *a, **k: None)


def test_serve_refuses_a_missing_folder(tmp_path, capsys, clean_env, no_serving):
    """serve does not invent the folder of a mistyped --db; it says so in one line."""
    target = tmp_path / "missing" / "deeper" / "a.db"
    argv = ["analyzer", "serve", "--port", "0", "--db", str(target)]
    err = _one_line_error(capsys, main(argv))
    assert "does not exist" in err and str(target.parent) in err
    assert not (tmp_path / "missing").exists()


def test_suggest_warns_when_the_gate_leaves_behaviours_out(db, tmp_path, capsys):
    """Too high --min-invocations: a warning with the count; a blocking stage that
    would block everything is refused (exit 1, nothing written)."""
    path, _ = db
    out = tmp_path / "policy.json"
    argv = ["policy", "suggest", FUNCTION, "--db", path, "--min-invocations", "100"]

    assert main([*argv, "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "warning:" in err and "fewer than 100 invocation(s)" in err
    assert "refusing stage full" in err and not out.exists()

    assert main([*argv, "--stage", "block-high-risk"]) == 1
    assert "refusing stage block-high-risk" in capsys.readouterr().err

    assert main([*argv, "--stage", "alert-new", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    doc = json.loads(out.read_text())
    gated = [e for e in doc["evidence"]["excluded"] if "fewer than 100" in e["reason"]]
    assert gated and f"warning: {len(gated)} of " in err and "refusing" not in err

    assert main(["policy", "suggest", FUNCTION, "--db", path]) == 0
    assert "refusing" not in capsys.readouterr().err
