"""The example CDK app: ``cd infra && cdk synth`` (or ``python app.py``).

Build the artifacts first, from the repository root:

    palisade layer build                       # dist/palisade-layer-x86_64.zip
    palisade layer analyzer --into dist/analyzer

Context (``-c key=value``): ``alert_email`` subscribes an address to the alerts;
``layer_zip`` and ``analyzer_dir`` point at artifacts elsewhere than ``dist/``.
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
    context = app.node.try_get_context
    ExampleStack(
        app,
        "PalisadeExample",
        layer_zip=Path(
            context("layer_zip") or REPO / "dist" / "palisade-layer-x86_64.zip"
        ),
        analyzer_dir=Path(context("analyzer_dir") or REPO / "dist" / "analyzer"),
        alert_email=context("alert_email"),
    )
    app.synth()


if __name__ == "__main__":
    main()
