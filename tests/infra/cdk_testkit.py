"""The app the CDK tests synthesise once (jsii start-up and synth are slow).

The app holds the example stack (analyzer, sample function, one more Python
function) and a workloads stack with every kind of function the protection Aspect
must handle: Python zip functions, a container image, Node, Python 3.11, and one
that already has five layers.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))

import aws_cdk as cdk  # noqa: E402


@dataclass
class Synth:
    """The synthesised stacks and what the Aspect did."""

    example: Any
    workloads: Any
    example_template: Any
    workloads_template: Any
    protection: Any


def fake_artifacts(root: Path) -> tuple[Path, Path]:
    """A stand-in layer zip and analyzer folder: synthesis only hashes them."""
    layer_zip = root / "palisade-layer-x86_64.zip"
    with zipfile.ZipFile(layer_zip, "w") as archive:
        archive.writestr("palisade-exec-wrapper", '#!/bin/sh\nexec "$@"\n')
    analyzer = root / "analyzer"
    (analyzer / "palisade_analyzer").mkdir(parents=True)
    (analyzer / "palisade_analyzer" / "aws_lambda.py").write_text("# stand-in\n")
    return layer_zip, analyzer


def build(tmp: Path) -> Synth:
    """Build and synthesise the test app in ``tmp``."""
    from aws_cdk import assertions
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_lambda as lambda_
    from palisade_infra import PalisadeProtection
    from palisade_infra.example import ExampleStack

    layer_zip, analyzer_dir = fake_artifacts(tmp)
    app = cdk.App()
    env = cdk.Environment(account="123456789012", region="us-east-1")
    example = ExampleStack(
        app,
        "Example",
        layer_zip=layer_zip,
        analyzer_dir=analyzer_dir,
        alert_email="secops@example.com",
        env=env,
    )
    lambda_.Function(
        example,
        "Named",
        function_name="orders-api",
        code=lambda_.Code.from_inline("def handler(e, c):\n    return 1\n"),
        handler="index.handler",
        runtime=lambda_.Runtime.PYTHON_3_12,
    )

    workloads = cdk.Stack(app, "Workloads", env=env)
    inline = lambda_.Code.from_inline("def handler(e, c):\n    return 1\n")
    for name in ("PyOne", "PyTwo"):
        lambda_.Function(
            workloads,
            name,
            code=inline,
            handler="index.handler",
            runtime=lambda_.Runtime.PYTHON_3_12,
        )
    lambda_.Function(
        workloads,
        "Node",
        code=lambda_.Code.from_inline("exports.handler = async () => 1;"),
        handler="index.handler",
        runtime=lambda_.Runtime.NODEJS_24_X,
    )
    lambda_.DockerImageFunction(
        workloads,
        "Image",
        code=lambda_.DockerImageCode.from_ecr(
            ecr.Repository.from_repository_name(workloads, "Repo", "app")
        ),
    )
    lambda_.Function(
        workloads,
        "OldPython",
        code=inline,
        handler="index.handler",
        runtime=lambda_.Runtime.PYTHON_3_11,
    )
    crowded = lambda_.Function(
        workloads,
        "Crowded",
        code=inline,
        handler="index.handler",
        runtime=lambda_.Runtime.PYTHON_3_12,
    )
    for i in range(5):
        crowded.add_layers(
            lambda_.LayerVersion.from_layer_version_arn(
                workloads,
                f"Layer{i}",
                f"arn:aws:lambda:us-east-1:123456789012:layer:vendor{i}:1",
            )
        )
    protection = PalisadeProtection(
        layer_zip=layer_zip, analyzer=example.analyzer, mode="alert"
    )
    cdk.Aspects.of(workloads).add(protection, priority=cdk.AspectPriority.MUTATING)

    return Synth(
        example=example,
        workloads=workloads,
        example_template=assertions.Template.from_stack(example),
        workloads_template=assertions.Template.from_stack(workloads),
        protection=protection,
    )
