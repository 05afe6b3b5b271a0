"""``palisade policy publish``: validated policies land in SSM as new versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from palisade_cli import publish
from palisade_cli.main import main as palisade

pytestmark = pytest.mark.aws

POLICY = {
    "version": 1,
    "mode": "block",
    "network": {"allow": [{"host": "api.example.com", "ports": [443]}]},
}


@pytest.fixture
def ssm(fake_aws: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def _write(tmp_path: Path, document: object, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_published_policy_reads_back(
    ssm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI stores the canonical JSON and prints name and version."""
    path = _write(tmp_path, POLICY)
    assert palisade(["policy", "publish", "orders", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "published /palisade/policies/orders version 1" in out

    stored = ssm.get_parameter(Name="/palisade/policies/orders")["Parameter"]
    assert json.loads(stored["Value"]) == POLICY
    assert stored["Type"] == "String"


def test_republish_creates_a_new_version(ssm: Any, tmp_path: Path) -> None:
    """A second publish overwrites as version 2 and keeps version 1 readable."""
    first = publish.publish("orders", str(_write(tmp_path, POLICY)), client=ssm)
    changed = dict(POLICY, mode="alert")
    second = publish.publish(
        "orders", str(_write(tmp_path, changed, "p2.json")), client=ssm
    )
    assert (first.version, second.version) == (1, 2)
    assert second.policy_id != first.policy_id
    old = ssm.get_parameter(Name="/palisade/policies/orders:1")["Parameter"]
    assert json.loads(old["Value"])["mode"] == "block"


def test_yaml_policy_and_custom_prefix(ssm: Any, tmp_path: Path) -> None:
    """YAML input is stored as JSON under the prefix given."""
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nmode: monitor\n")
    done = publish.publish("billing", str(path), prefix="/team/a/", client=ssm)
    assert done.name == "/team/a/billing"
    value = ssm.get_parameter(Name="/team/a/billing")["Parameter"]["Value"]
    assert json.loads(value) == {"version": 1, "mode": "monitor"}


def test_invalid_policy_is_refused_with_field_path(
    ssm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad field is named by its JSON path and nothing reaches SSM."""
    bad = {"version": 1, "network": {"allow": [{"host": "x.com", "ports": [70000]}]}}
    path = _write(tmp_path, bad)
    assert palisade(["policy", "publish", "orders", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "$.network.allow[0].ports[0]" in err
    assert "nothing was published" in err
    assert ssm.describe_parameters()["Parameters"] == []


def test_bad_function_name_is_refused(ssm: Any, tmp_path: Path) -> None:
    """A name Lambda would not accept is refused before any call."""
    with pytest.raises(publish.PublishError, match="found 'a/b'"):
        publish.publish("a/b", str(_write(tmp_path, POLICY)), client=ssm)


def test_large_policy_uses_advanced_tier(ssm: Any, tmp_path: Path) -> None:
    """Between 4 and 8 KB the parameter is stored in the advanced tier."""
    rules = [{"path": f"/tmp/data-{i:04d}/*", "access": ["read"]} for i in range(120)]
    document = {"version": 1, "file": {"allow": rules}}
    done = publish.publish("big", str(_write(tmp_path, document)), client=ssm)
    assert 4096 < done.size <= 8192 and done.tier == "Advanced"


def test_too_large_policy_is_refused(ssm: Any, tmp_path: Path) -> None:
    """Past 8 KB the policy is refused with its size."""
    rules = [{"path": f"/tmp/data-{i:04d}/*", "access": ["read"]} for i in range(400)]
    document = {"version": 1, "file": {"allow": rules}}
    with pytest.raises(publish.PublishError, match="over Parameter Store's limit"):
        publish.publish("big", str(_write(tmp_path, document)), client=ssm)
