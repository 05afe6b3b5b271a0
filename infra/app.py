"""The example CDK app: ``cd infra && cdk synth`` (or ``python app.py``).

Build the artifacts first, from the repository root:

    palisade layer build                       # dist/palisade-layer-x86_64.zip
    palisade layer analyzer --into dist/analyzer

Context: ``-c alert_email=you@example.com`` subscribes an address to the alerts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Node 20 prints an end-of-life banner on every jsii start; it says nothing new.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aws_cdk as cdk
from palisade_infra.example import REPO, ExampleStack


def main() -> None:
    """Synthesise the example stack."""
    app = cdk.App()
    ExampleStack(
        app,
        "PalisadeExample",
        layer_zip=REPO / "dist" / "palisade-layer-x86_64.zip",
        analyzer_dir=REPO / "dist" / "analyzer",
        alert_email=app.node.try_get_context("alert_email"),
    )
    app.synth()


if __name__ == "__main__":
    main()
