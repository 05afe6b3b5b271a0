"""How much of each benchmark to run: the full plan and the quick one."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SECTIONS = ("micro", "invocation", "coldstart", "memory", "layer", "analyzer")


def _full_iterations() -> dict[str, int]:
    return {
        "id": 100_000,
        "audit": 100_000,
        "open_read": 2_000,
        "connect": 400,
        "connect_by_name": 400,
        "subprocess": 40,
    }


def _quick_iterations() -> dict[str, int]:
    return {
        "id": 20_000,
        "audit": 20_000,
        "open_read": 200,
        "connect": 50,
        "connect_by_name": 50,
        "subprocess": 5,
    }


@dataclass
class Plan:
    """Repetition counts and output places of one benchmark run."""

    quick: bool = False
    out: Path | None = None
    sections: tuple[str, ...] = SECTIONS
    micro_processes: int = 5
    micro_max_processes: int = 8
    micro_repetitions: int = 4
    micro_iterations: dict[str, int] = field(default_factory=_full_iterations)
    invocations: int = 150
    invocation_rounds: int = 3
    wrapper_calls: int = 20_000
    cold_processes: int = 15
    memory_processes: int = 5
    analyzer_events: int = 100_000
    analyzer_seconds: float = 8.0
    analyzer_dynamodb_events: int = 2_000
    detection_samples: int = 30
    learn_invocations: int = 40
    warmup_invocations: int = 5
    handlers: tuple[str, ...] = ("file_processor", "orders_api", "partner_notifier")
    # The whole run should stay under ten minutes: repeats of noisy figures are
    # skipped once the run has used this much.
    budget_s: float = 480.0
    started_at: float = field(default_factory=time.monotonic)
    peer_available: bool = field(
        default_factory=lambda: importlib.util.find_spec("aikido_zen") is not None
    )

    @classmethod
    def quick_plan(cls) -> Plan:
        """A fast, partial run: every section, tiny repetition counts."""
        return cls(
            quick=True,
            micro_processes=2,
            micro_max_processes=2,
            micro_repetitions=2,
            micro_iterations=_quick_iterations(),
            invocations=20,
            invocation_rounds=1,
            wrapper_calls=2_000,
            cold_processes=3,
            memory_processes=2,
            analyzer_events=3_000,
            analyzer_seconds=3.0,
            analyzer_dynamodb_events=150,
            detection_samples=5,
            learn_invocations=12,
            warmup_invocations=2,
        )

    @classmethod
    def smoke_plan(cls) -> Plan:
        """Smaller still than quick: every section once, one handler (for tests)."""
        plan = cls.quick_plan()
        plan.micro_processes = plan.micro_max_processes = 1
        plan.micro_repetitions = 1
        plan.micro_iterations = {
            k: max(1, v // 4) for k, v in plan.micro_iterations.items()
        }
        plan.invocations = 3
        plan.learn_invocations = 3
        plan.warmup_invocations = 1
        plan.handlers = ("orders_api",)
        plan.wrapper_calls = 500
        plan.cold_processes = 2
        plan.memory_processes = 1
        plan.analyzer_events = 1_500
        plan.analyzer_seconds = 1.0
        plan.analyzer_dynamodb_events = 60
        plan.detection_samples = 2
        return plan

    def may_repeat(self, cost_s: float) -> bool:
        """Whether a repeat costing about ``cost_s`` seconds still fits the budget."""
        return time.monotonic() - self.started_at + cost_s < self.budget_s

    @property
    def results_dir(self) -> Path:
        """Where results JSON files go (kept, one per run)."""
        return (self.out / "results") if self.out else REPO / "bench" / "results"

    @property
    def docs_path(self) -> Path:
        """The generated Markdown page."""
        return (
            (self.out / "benchmarks.md")
            if self.out
            else REPO / "docs" / "benchmarks.md"
        )

    @property
    def charts_dir(self) -> Path:
        """Where the PNG charts go."""
        return (self.out / "benchmarks") if self.out else REPO / "docs" / "benchmarks"
