"""A policy published to SSM is enforced by a protected function's next cold start.

``palisade policy publish`` writes to a moto server; a function in the sandbox,
with the built layer as /opt and ``PALISADE_POLICY=extension`` plus
``PALISADE_EXTENSION_POLICY=ssm:<name>``, gets the policy through the extension,
which reads the parameter during INIT. The first cold start runs under a monitor
policy; after a block policy is published, the next cold start refuses the spawn.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import SANDBOX_LAYER_MARKS, build_opt
from palisade_cli.main import main as palisade

FUNCTION = "orders-api"
PARAMETER = f"/palisade/policies/{FUNCTION}"

pytestmark = SANDBOX_LAYER_MARKS
sandbox = pytest.importorskip(
    "palisade_sandbox", reason="the local sandbox is not in this checkout yet"
)

APP = textwrap.dedent(
    '''
    import subprocess


    def handler(event, context):
        """Run a program; say whether the policy let it."""
        try:
            subprocess.run(["/bin/true"], check=False)
            return {"spawn": "ran"}
        except PermissionError as exc:
            return {"spawn": f"blocked: {exc}"}
    '''
)


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built for this machine, unpacked as /opt."""
    return build_opt(tmp_path_factory)


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on loopback; the CLI gets fake credentials for it."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    with sandbox.MotoEndpoint() as endpoint:
        assert endpoint.url is not None
        yield endpoint.url


def _publish(tmp_path: Path, url: str, document: dict[str, Any], name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    status = palisade(
        [
            "policy",
            "publish",
            FUNCTION,
            "--file",
            str(path),
            "--endpoint-url",
            url,
            "--region",
            "us-east-1",
        ]
    )
    assert status == 0


def _cold_start(
    opt: Path, code: Path, url: str, batches: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One fresh execution environment, one invoke: the answer and its records."""
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": str(opt / "palisade-exec-wrapper"),
        "PALISADE_POLICY": "extension",
        "PALISADE_EXTENSION_POLICY": f"ssm:{PARAMETER}",
        "PALISADE_SINK": f"file:{batches}",
    }
    with sandbox.Sandbox(
        "app.handler",
        code_dir=code,
        opt_dir=opt,
        env=env,
        aws_endpoint=url,
        function_name=FUNCTION,
        timeout=10,
    ) as box:
        result = box.invoke({})
        assert result.ok, (result.status, result.error, result.logs)
    records = [
        record
        for line in batches.read_text().splitlines()
        for record in json.loads(line)["records"]
    ]
    batches.unlink()
    return result.payload, records


def test_published_policy_is_enforced_on_next_cold_start(
    opt: Path, moto_url: str, tmp_path: Path
) -> None:
    """monitor policy: the spawn runs; block policy published: the next cold
    start blocks it, and the records name the policy in force."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    batches = tmp_path / "batches.jsonl"

    _publish(tmp_path, moto_url, {"version": 1, "mode": "monitor"}, "v1.json")
    first, first_records = _cold_start(opt, code, moto_url, batches)
    assert first == {"spawn": "ran"}

    _publish(tmp_path, moto_url, {"version": 1, "mode": "block"}, "v2.json")
    second, second_records = _cold_start(opt, code, moto_url, batches)
    assert second["spawn"].startswith("blocked:"), second

    modes = {r["request_id"]: r.get("mode") for r in first_records + second_records}
    assert "block" in modes.values() and "monitor" in modes.values(), modes
    policies = {r.get("policy_id") for r in second_records} - {None}
    assert policies and policies.isdisjoint({r.get("policy_id") for r in first_records})
