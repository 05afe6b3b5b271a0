"""Fixtures of the CDK tests: one synthesis for the whole session."""

from __future__ import annotations

import os

import pytest

# Before aws_cdk is imported: jsii prints an end-of-life banner for Node 20 at
# start-up unless told not to (the variable names the major version).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed")

from cdk_testkit import Synth, build


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The test app, synthesised once (see cdk_testkit)."""
    return build(tmp_path_factory.mktemp("artifacts"))
