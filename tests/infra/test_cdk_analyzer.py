"""The PalisadeAnalyzer construct synthesises the same analyzer as template.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aws_cdk import assertions
from cdk_testkit import REPO, Synth

Match = assertions.Match


def _statements(template: Any) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    return [
        s
        for name, policy in policies.items()
        if name.startswith("Analyzer")
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_tables_are_on_demand_with_pitr_and_sse(synth: Synth) -> None:
    """Both tables: pk/sk strings, PAY_PER_REQUEST, PITR, SSE, retained."""
    template = synth.example_template
    tables = template.find_resources("AWS::DynamoDB::Table")
    assert len(tables) == 2
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]
        assert table["DeletionPolicy"] == "Retain"
    names = sorted(t["Properties"]["TableName"] for t in tables.values())
    assert names == ["Example-alerts", "Example-profiles"]


def test_trail_bucket_is_private_encrypted_tls_only_with_lifecycle(
    synth: Synth,
) -> None:
    """SSE, public access blocked, lifecycle expiry, and a deny on plain HTTP."""
    template = synth.example_template
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": [Match.object_like({"ExpirationInDays": 90})]
            },
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_ingest_paths(synth: Synth) -> None:
    """Function URL with IAM auth; Kinesis mapping with partial batch failures."""
    template = synth.example_template
    template.has_resource_properties("AWS::Lambda::Url", {"AuthType": "AWS_IAM"})
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "StartingPosition": "TRIM_HORIZON",
            "DestinationConfig": Match.object_like({"OnFailure": Match.any_value()}),
        },
    )
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
        },
    )


def test_alerts_go_to_sns_with_email_and_eventbridge(synth: Synth) -> None:
    """An encrypted topic, the e-mail subscription, and both sinks configured."""
    template = synth.example_template
    template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()}
    )
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "secops@example.com"},
    )
    ingest = [
        r["Properties"]
        for n, r in template.find_resources("AWS::Lambda::Function").items()
        if n.startswith("AnalyzerIngest")
    ]
    assert len(ingest) == 2
    for props in ingest:
        sinks = str(props["Environment"]["Variables"]["PALISADE_ANALYZER_SINKS"])
        assert "sns:" in sinks and "eventbridge:default" in sinks
        assert props["Environment"]["Variables"]["PALISADE_ANALYZER_BACKEND"] == "aws"


def test_analyzer_roles_are_least_privilege(synth: Synth) -> None:
    """No '*' action anywhere; DynamoDB actions are exactly what ingest uses."""
    statements = _statements(synth.example_template)
    for statement in statements:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert not [a for a in actions if a == "*" or a.endswith(":*")], statement
        assert statement["Resource"] != "*", statement
    dynamo = [
        s
        for s in statements
        if any(str(a).startswith("dynamodb:") for a in s["Action"])
    ]
    assert {a for s in dynamo for a in s["Action"]} == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    roles = synth.example_template.find_resources("AWS::IAM::Role")
    analyzer_roles = [r for n, r in roles.items() if n.startswith("Analyzer")]
    assert len(analyzer_roles) == 2
    for role in analyzer_roles:
        assert "ManagedPolicyArns" not in role["Properties"], role


def test_functions_log_to_their_own_group_with_retention(synth: Synth) -> None:
    """Every analyzer function has a log group with a retention set."""
    template = synth.example_template
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) >= 2
    assert all("RetentionInDays" in g["Properties"] for g in groups.values())
    for name, fn in template.find_resources("AWS::Lambda::Function").items():
        if name.startswith("AnalyzerIngest"):
            assert "LogGroup" in fn["Properties"]["LoggingConfig"], name


def test_synthesised_templates_pass_cfn_lint(synth: Synth, tmp_path: Path) -> None:
    """cfn-lint finds nothing in CDK's output beyond the two rules .cfnlintrc
    explains (CDK's redundant DependsOn and its Fn::Join style)."""
    paths = []
    for name, template in (
        ("example", synth.example_template),
        ("workloads", synth.workloads_template),
    ):
        path = tmp_path / f"{name}.template.json"
        path.write_text(json.dumps(template.to_json()))
        paths.append(str(path))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--", *paths],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_app_synthesises(tmp_path: Path) -> None:
    """infra/app.py, run as cdk would run it, writes the example stack's template."""
    from cdk_testkit import fake_artifacts

    layer_zip, analyzer_dir = fake_artifacts(tmp_path)
    out = tmp_path / "cdk.out"
    context = {"layer_zip": str(layer_zip), "analyzer_dir": str(analyzer_dir)}
    done = subprocess.run(
        [sys.executable, str(REPO / "infra" / "app.py")],
        capture_output=True,
        text=True,
        cwd=REPO / "infra",
        env={
            **os.environ,
            "CDK_OUTDIR": str(out),
            "CDK_CONTEXT_JSON": json.dumps(context),
        },
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    template = json.loads((out / "PalisadeExample.template.json").read_text())
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert {"AWS::Lambda::LayerVersion", "AWS::Kinesis::Stream"} <= kinds
