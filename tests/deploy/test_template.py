"""template.yaml: lint-clean, least-privilege, and buildable the way sam build does."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_Loader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


def _lint(
    path: Path, *extra: str, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), *extra, "--", str(path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_cfn_lint_reports_nothing(tmp_path: Path) -> None:
    """cfn-lint (SAM transform applied, informational rules included) is silent.

    It runs outside the checkout so that .cfnlintrc, whose two ignored rules
    concern CDK's generated templates only, cannot hide anything here.
    """
    done = _lint(TEMPLATE, "--include-checks", "I", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_cfn_lint_catches_a_broken_copy(tmp_path: Path) -> None:
    """The lint really runs: a memory size below Lambda's minimum is an error."""
    broken = tmp_path / "template.yaml"
    broken.write_text(
        TEMPLATE.read_text().replace("MemorySize: 512", "MemorySize: 5", 1)
    )
    done = _lint(broken)
    assert done.returncode != 0
    assert "E3034" in done.stdout


def test_sam_validate_lint() -> None:
    """``sam validate --lint`` agrees, where the SAM CLI is installed."""
    sam = shutil.which("sam")
    if sam is None:
        pytest.skip("the sam CLI is not installed; cfn-lint above covers the lint")
    done = subprocess.run(
        [sam, "validate", "--lint", "--template-file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props and resource["Type"] != "AWS::S3::BucketPolicy":
            docs.append(props["PolicyDocument"])
        for doc in docs:
            found += [(name, statement) for statement in doc["Statement"]]
    return found


def test_iam_actions_have_no_wildcards(template: dict[str, Any]) -> None:
    """Every allowed action is named; no 'service:*' or '*' anywhere."""
    statements = _statements(template)
    assert statements
    for name, statement in statements:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert not [a for a in actions if "*" in a], (name, actions)
        assert statement.get("Resource") not in ("*", ["*"]), name


def test_every_function_has_its_own_role_and_log_group(
    template: dict[str, Any],
) -> None:
    """No SAM-generated role (whose event policies use '*'); logs are scoped."""
    resources = template["Resources"]
    functions = {
        name: r for name, r in resources.items() if r["Type"].endswith("::Function")
    }
    assert set(functions) >= {
        "IngestUrlFunction",
        "StreamIngestFunction",
        "QueueIngestFunction",
        "SampleFunction",
    }
    roles = [f["Properties"]["Role"] for f in functions.values()]
    assert len({str(r) for r in roles}) == len(roles)
    for function in functions.values():
        assert "LogGroup" in function["Properties"]["LoggingConfig"]


def test_sample_function_is_protected(template: dict[str, Any]) -> None:
    """The sample has the layer, the exec wrapper and Palisade's settings."""
    sample = template["Resources"]["SampleFunction"]["Properties"]
    assert sample["Layers"] == [{"Ref": "PalisadeLayer"}]
    env = sample["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/palisade-exec-wrapper"
    assert env["PALISADE_MODE"] == {
        "Fn::If": ["ModeFromPolicy", {"Ref": "AWS::NoValue"}, {"Ref": "Mode"}]
    }
    assert env["PALISADE_SINK"] == "kinesis"
    assert "resolve:secretsmanager" in env["PALISADE_ANALYZER_KEY"]["Fn::Sub"]
    assert env["PALISADE_POLICY"] == "extension"
    assert env["PALISADE_EXTENSION_POLICY"] == {"Fn::Sub": "ssm:${SamplePolicy}"}


def test_stream_consumers_report_partial_failures(template: dict[str, Any]) -> None:
    """Kinesis and SQS consumers return batchItemFailures, not whole-batch retries."""
    resources = template["Resources"]
    for name, event in (
        ("StreamIngestFunction", "Stream"),
        ("QueueIngestFunction", "Queue"),
    ):
        props = resources[name]["Properties"]["Events"][event]["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    url = resources["IngestUrlFunction"]["Properties"]["FunctionUrlConfig"]
    assert url["AuthType"] == "AWS_IAM"


def test_layer_makefile_builds_like_sam(tmp_path: Path) -> None:
    """The build-PalisadeLayer target, run from elsewhere, unpacks the layer.

    sam build runs ``make --makefile <checkout>/deploy/layer/Makefile
    build-PalisadeLayer`` from a scratch directory with ARTIFACTS_DIR set; this does
    the same.
    """
    if not (REPO / "extension" / "launcher").exists():
        pytest.skip("the extension launcher is not in this checkout yet")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    done = subprocess.run(
        [
            "make",
            "--makefile",
            str(REPO / "deploy" / "layer" / "Makefile"),
            "build-PalisadeLayer",
            f"LAYER_OUT={tmp_path / 'dist'}",
        ],
        cwd=scratch,
        env={**os.environ, "ARTIFACTS_DIR": str(artifacts)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "zipped" in done.stdout
    launcher = artifacts / "extensions" / "palisade"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    assert os.access(artifacts / "palisade-exec-wrapper", os.X_OK)
    assert (artifacts / "python" / "palisade" / "__init__.py").is_file()
    assert list((artifacts / "extensions").iterdir()) == [launcher]
    assert (tmp_path / "dist" / "palisade-layer-x86_64.zip").is_file()


def test_sam_build(tmp_path: Path) -> None:
    """``sam build`` runs the makefile targets into a build folder, offline."""
    sam = shutil.which("sam")
    if sam is None:
        pytest.skip("the sam CLI is not installed; the Makefile test covers the build")
    if not (REPO / "extension" / "launcher").exists():
        pytest.skip("the extension launcher is not in this checkout yet")
    done = subprocess.run(
        [
            sam,
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(tmp_path / "build"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    layer_dir = tmp_path / "build" / "PalisadeLayer"
    assert os.access(layer_dir / "extensions" / "palisade", os.X_OK)
    handler = tmp_path / "build" / "StreamIngestFunction" / "palisade_analyzer"
    assert (handler / "__init__.py").is_file()


def test_analyzer_makefile_builds_each_function(tmp_path: Path) -> None:
    """Each analyzer function's target lays out the handler and its dependencies."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    done = subprocess.run(
        [
            "make",
            "--makefile",
            str(REPO / "deploy" / "analyzer" / "Makefile"),
            "build-StreamIngestFunction",
        ],
        cwd=tmp_path,
        env={**os.environ, "ARTIFACTS_DIR": str(artifacts)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (artifacts / "palisade_analyzer" / "aws_lambda.py").is_file()
    assert (artifacts / "palisade" / "schemas" / "batch.schema.json").is_file()
    assert (artifacts / "aws_lambda_powertools").is_dir()
    assert not (artifacts / "boto3").exists()
    compiled = list(artifacts.glob("rpds/*.so"))
    assert compiled and all("cpython-312-x86_64" in p.name for p in compiled)
