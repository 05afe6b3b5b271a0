"""botocore calls: one aws:call event decided before any request, and the
endpoint's own network events marked with aws_endpoint. Runs against moto."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("botocore")
moto_server = pytest.importorskip("moto.server")

SETUP = """
os.environ.update(AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing',
                  AWS_DEFAULT_REGION='us-east-1')
import boto3
ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else None
"""


@pytest.fixture
def moto_endpoint():
    """A moto server on a free loopback port, stopped afterwards."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    import urllib.request

    url = f"http://{host}:{port}"
    # The threaded server shares moto's in-process state: start from empty.
    urllib.request.urlopen(
        urllib.request.Request(url + "/moto-api/reset", method="POST")
    ).close()
    yield url
    server.stop()


def _run(tmp_path: Path, endpoint: str, mode: str, policy: str | None = None):
    from layer_harness import child_env, handler_script, run_script

    body = f"""
    client = boto3.client('dynamodb', endpoint_url={endpoint!r})
    try:
        client.create_table(
            TableName='orders',
            KeySchema=[{{'AttributeName': 'id', 'KeyType': 'HASH'}}],
            AttributeDefinitions=[{{'AttributeName': 'id', 'AttributeType': 'S'}}],
            BillingMode='PAY_PER_REQUEST',
        )
    except PermissionError:
        pass
    return sorted(client.list_tables()['TableNames']) if {mode!r} != 'block' else None
    """
    env = child_env(tmp_path, PALISADE_MODE=mode)
    if policy:
        env["PALISADE_POLICY"] = policy
    return run_script(tmp_path, handler_script(body, SETUP), env=env)


def test_aws_call_event_and_endpoint(tmp_path: Path, moto_endpoint: str) -> None:
    """A DynamoDB CreateTable is aws:call dynamodb:CreateTable:orders with region
    and endpoint; its connect carries aws_endpoint."""
    run = _run(tmp_path, moto_endpoint, "alert")
    call = run.one("aws", "call", "dynamodb:CreateTable:orders")
    assert call["detail"]["region"] == "us-east-1"
    assert call["detail"]["endpoint"] == "127.0.0.1"
    assert call["verdict"] == "alerted"
    assert 'RESULT ["orders"]' in run.stdout, run.describe()
    connects = run.events("network", "connect")
    assert connects and all(
        c["detail"].get("aws_endpoint") == "127.0.0.1" for c in connects
    )


def test_aws_call_blocked_before_request(tmp_path: Path, moto_endpoint: str) -> None:
    """Blocked, CreateTable raises before any request: the table does not exist
    and no connection was made."""
    run = _run(tmp_path, moto_endpoint, "block")
    assert run.one("aws", "call", "dynamodb:CreateTable:orders")["verdict"] == "blocked"
    assert not run.events("network", "connect"), run.describe()
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert "orders" not in client.list_tables()["TableNames"]
