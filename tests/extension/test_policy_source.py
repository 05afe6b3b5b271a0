"""The policy the extension serves: SSM (moto), file, inline; refresh; on-error."""

from __future__ import annotations

import json
import os

import pytest
from ext_fakes import Layer, base_env, spawn, wait_until
from palisade_extension.errors import PolicySourceError
from palisade_extension.policy_source import PolicyStore, load

POLICY_YAML = """
version: 1
mode: alert
network:
  allow:
    - host: api.example.com
      ports: [443]
"""


@pytest.fixture
def ssm(monkeypatch):
    """moto's SSM in-process with fake credentials."""
    import boto3
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("ssm")


def _schema_valid_policy() -> dict:
    return load(POLICY_YAML).policy  # type: ignore[return-value]


@pytest.mark.aws
def test_ssm_secure_string_yaml_is_fetched_decrypted_and_converted(ssm):
    """GIVEN a SecureString YAML policy in SSM WHEN loaded THEN it is decrypted,
    converted to JSON and validated; the source names the parameter and version."""
    ssm.put_parameter(Name="/palisade/orders", Value=POLICY_YAML, Type="SecureString")
    loaded = load("ssm:/palisade/orders")
    assert loaded.policy["mode"] == "alert"
    assert loaded.source == "ssm:/palisade/orders@1"


@pytest.mark.aws
def test_ssm_missing_or_invalid_raises(ssm):
    """A missing parameter or one that breaks the schema is a PolicySourceError."""
    with pytest.raises(PolicySourceError, match="/palisade/none"):
        load("ssm:/palisade/none")
    ssm.put_parameter(Name="/palisade/bad", Value="version: 2\n", Type="String")
    with pytest.raises(PolicySourceError, match=r"policy\.schema\.json"):
        load("ssm:/palisade/bad")


@pytest.mark.aws
def test_refresh_picks_up_a_new_version_and_keeps_last_good(ssm):
    """A changed parameter is served after a refresh; a broken one is not served,
    the last good policy stays."""
    ssm.put_parameter(Name="/p", Value=POLICY_YAML, Type="String")
    store = PolicyStore("ssm:/p", refresh_s=0.0)
    store.load_initial()
    assert store.answer()["policy"]["mode"] == "alert"
    ssm.put_parameter(
        Name="/p",
        Value=POLICY_YAML.replace("alert", "block"),
        Type="String",
        Overwrite=True,
    )
    store.refresh_now()
    assert store.answer()["policy"]["mode"] == "block"
    assert store.answer()["source"] == "ssm:/p@2"
    ssm.put_parameter(
        Name="/p", Value="[not, a, policy]", Type="String", Overwrite=True
    )
    store.refresh_now()
    assert store.answer()["policy"]["mode"] == "block"


def test_refresh_is_due_only_after_the_interval():
    """maybe_refresh does nothing for non-SSM sources or before the interval."""
    assert not PolicyStore(POLICY_YAML, 0.001).maybe_refresh()
    assert not PolicyStore("ssm:/p", 3600).maybe_refresh()


def test_file_and_inline_sources(short_dir):
    """A path (with or without file:) and inline JSON or YAML are all accepted."""
    path = os.path.join(short_dir, "policy.yaml")
    with open(path, "w") as handle:
        handle.write(POLICY_YAML)
    assert load(path).source == f"file:{path}"
    assert load("file:" + path).policy["mode"] == "alert"
    assert load(json.dumps({"version": 1})).source == "inline"
    assert load(POLICY_YAML).policy["network"]["allow"][0]["ports"] == [443]
    assert load("").policy is None
    with pytest.raises(PolicySourceError, match="no such file"):
        load("/nonexistent/policy.yaml")
    with pytest.raises(PolicySourceError, match="expected a mapping"):
        load("- just\n- a list\n")


@pytest.fixture
def moto_server():
    """A moto server on a free loopback port, for the extension subprocess."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _put(endpoint: str, name: str, value: str) -> None:
    import boto3

    boto3.client(
        "ssm",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


@pytest.mark.aws
def test_extension_serves_ssm_policy_to_the_layer(
    fake_lambda, opt, short_dir, procs, moto_server
):
    """The extension fetches the SSM policy (AWS_ENDPOINT_URL → moto) before it
    registers, and answers the layer's policy frame with it."""
    _put(moto_server, "/palisade/orders", POLICY_YAML)
    env = base_env(
        short_dir,
        fake_lambda.address,
        PALISADE_POLICY="ssm:/palisade/orders",
        AWS_ENDPOINT_URL=moto_server,
    )
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    reply = layer.policy()
    assert reply["policy"] == _schema_valid_policy()
    assert reply["source"] == "ssm:/palisade/orders@1"
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0


@pytest.mark.aws
def test_missing_parameter_open_serves_null_closed_reports_init_error(
    fake_lambda, opt, short_dir, procs, moto_server
):
    """PALISADE_ON_ERROR=open: the layer gets policy null with the error; closed:
    the extension reports /extension/init/error and exits non-zero."""
    env = base_env(
        short_dir,
        fake_lambda.address,
        PALISADE_POLICY="ssm:/palisade/missing",
        AWS_ENDPOINT_URL=moto_server,
    )
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    reply = Layer(
        env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"]
    ).policy()
    assert reply["policy"] is None and "/palisade/missing" in reply["error"]
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0
    assert fake_lambda.errors == []

    env["PALISADE_ON_ERROR"] = "closed"
    procs.append(spawn(opt, env))
    assert procs[1].wait(timeout=20) == 1
    assert wait_until(lambda: fake_lambda.errors)
    error = fake_lambda.errors[0]
    assert error["path"].endswith("/extension/init/error")
    assert error["type"] == "Palisade.PolicyUnavailable"


def test_policy_extension_means_the_extension_policy_variable():
    """PALISADE_POLICY=extension (the layer asks the extension) makes the extension
    serve PALISADE_EXTENSION_POLICY."""
    from palisade_extension import settings

    values = settings.load(
        {"PALISADE_POLICY": "extension", "PALISADE_EXTENSION_POLICY": "ssm:/p/orders"}
    )
    assert values["PALISADE_POLICY"] == "ssm:/p/orders"
    assert settings.load({"PALISADE_POLICY": "ssm:/x"})["PALISADE_POLICY"] == "ssm:/x"


@pytest.mark.aws
def test_changed_parameter_is_served_after_an_invoke_without_redeploy(
    fake_lambda, opt, short_dir, procs, moto_server
):
    """GIVEN a running extension serving version 1 WHEN the SSM parameter changes
    and an invoke passes the refresh interval THEN the layer is served version 2."""
    from ext_fakes import make_record

    _put(moto_server, "/palisade/live", POLICY_YAML)
    env = base_env(
        short_dir,
        fake_lambda.address,
        PALISADE_POLICY="ssm:/palisade/live",
        AWS_ENDPOINT_URL=moto_server,
        PALISADE_POLICY_REFRESH_S="0.001",
    )
    procs.append(spawn(opt, env))
    assert fake_lambda.wait_next(1)
    layer = Layer(env["PALISADE_EXTENSION_SOCKET"], env["PALISADE_EXTENSION_KEY"])
    assert layer.policy()["policy"]["mode"] == "alert"

    _put(moto_server, "/palisade/live", POLICY_YAML.replace("alert", "block"))
    fake_lambda.invoke("req-1")
    assert layer.record(make_record("req-1"))["type"] == "ack"
    assert fake_lambda.wait_next(2)
    assert wait_until(lambda: layer.policy()["source"] == "ssm:/palisade/live@2")
    assert layer.policy()["policy"]["mode"] == "block"
    fake_lambda.shutdown()
    assert procs[0].wait(timeout=10) == 0
