"""Palisade's benchmark harness: what the guard costs a function.

``run(plan)`` measures every section of ``plan`` and writes the results JSON,
``docs/benchmarks.md`` and its charts; ``Plan`` and ``Plan.quick_plan`` say how much.
"""

from __future__ import annotations

from .errors import BenchError
from .runner import run
from .settings import SECTIONS, Plan

__all__ = ["SECTIONS", "BenchError", "Plan", "run"]
