"""The example app's stack: the analyzer and a function it protects."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from palisade_infra.analyzer import PalisadeAnalyzer, analyzer_code
from palisade_infra.protection import PalisadeProtection

REPO = Path(__file__).resolve().parents[2]


class ExampleStack(cdk.Stack):
    """The analyzer plus one sample Python function, protected in block mode.

    Args:
        layer_zip: the zip from ``palisade layer build``.
        analyzer_dir: the folder from ``palisade layer analyzer --into``.
        sample_dir: the sample function's code.
        alert_email: subscribed to the alert topic when given.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer_zip: Path,
        analyzer_dir: Path,
        sample_dir: Path = REPO / "deploy" / "sample",
        alert_email: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.analyzer = PalisadeAnalyzer(
            self,
            "Analyzer",
            code=analyzer_code(analyzer_dir),
            alert_email=alert_email,
        )
        self.sample = lambda_.Function(
            self,
            "Sample",
            description="A sample function protected by Palisade.",
            code=lambda_.Code.from_asset(str(sample_dir)),
            handler="app.handler",
            runtime=lambda_.Runtime.PYTHON_3_12,
            timeout=cdk.Duration.seconds(10),
        )
        self.protection = PalisadeProtection(
            layer_zip=layer_zip, analyzer=self.analyzer, mode="block"
        )
        cdk.Aspects.of(self).add(self.protection, priority=cdk.AspectPriority.MUTATING)
