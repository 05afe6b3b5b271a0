"""Fixtures of the CDK tests: one synthesis for the whole session."""

from __future__ import annotations

import pytest

pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed")

from cdk_testkit import Synth, build


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The test app, synthesised once (see cdk_testkit)."""
    return build(tmp_path_factory.mktemp("artifacts"))
