"""Palisade for AWS CDK v2: the analyzer construct and the protection Aspect.

from palisade_infra import PalisadeAnalyzer, PalisadeProtection

analyzer = PalisadeAnalyzer(stack, "Analyzer", code=analyzer_code("dist/analyzer"))
Aspects.of(app).add(
    PalisadeProtection(layer_zip="dist/palisade-layer-x86_64.zip",
                       analyzer=analyzer, mode="block")
)
"""

from palisade_infra.analyzer import PalisadeAnalyzer, analyzer_code
from palisade_infra.protection import WRAPPER, PalisadeProtection

__all__ = ["WRAPPER", "PalisadeAnalyzer", "PalisadeProtection", "analyzer_code"]
