"""A measured figure, its budget and the pass/miss mark, as stored in results JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The budgets each figure is held to: (limit, unit, direction). "max": the figure
# must not exceed the limit; "min": it must reach it.
BUDGETS: dict[str, tuple[float, str, str]] = {
    "audit_event_ns": (200.0, "ns", "max"),
    "observed_op_ns": (2000.0, "ns", "max"),
    "invocation_wrapper_us": (30.0, "µs", "max"),
    "import_install_ms": (15.0, "ms", "max"),
    "memory_added_mb": (5.0, "MB", "max"),
    "extension_init_ms": (100.0, "ms", "max"),
    "extension_rss_mb": (30.0, "MB", "max"),
    "extension_latency_p50_ms": (1.0, "ms", "max"),
    "extension_latency_p99_ms": (5.0, "ms", "max"),
    "analyzer_events_per_s": (50_000.0, "events/s", "min"),
    "detection_latency_ms": (100.0, "ms", "max"),
    "layer_zip_mb": (5.0, "MB", "max"),
}

# A figure whose samples spread wider than this (IQR / median) is re-measured.
NOISE_LIMIT = 0.10


@dataclass
class Figure:
    """One line of the results table."""

    id: str
    section: str
    name: str
    value: float | None
    unit: str
    budget: str | None = None
    passed: bool | None = None
    median: float | None = None
    p99: float | None = None
    n: int | None = None
    spread: float | None = None
    ratio: float | None = None
    baseline: float | None = None
    context: str = ""
    status: str = "measured"
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The figure as plain JSON data."""
        return asdict(self)


def judged(figure: Figure, budget_key: str | None) -> Figure:
    """Attach the budget named ``budget_key`` to ``figure`` and mark pass or miss."""
    if budget_key is None:
        return figure
    limit, unit, direction = BUDGETS[budget_key]
    sign = "≤" if direction == "max" else "≥"
    figure.budget = f"{sign} {limit:g} {unit}"
    if figure.value is None:
        return figure
    if direction == "max":
        figure.passed = figure.value <= limit
    else:
        figure.passed = figure.value >= limit
    return figure


def not_measured(
    fid: str,
    section: str,
    name: str,
    unit: str,
    reason: str,
    budget_key: str | None = None,
) -> Figure:
    """A figure that could not be taken, with the reason in plain words."""
    figure = Figure(
        id=fid,
        section=section,
        name=name,
        value=None,
        unit=unit,
        status="not measured",
        reason=reason,
    )
    return judged(figure, budget_key)
