"""PNG charts of a results document (matplotlib, no display needed)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _micro(section: dict[str, Any], out: Path) -> list[Path]:
    raw = section.get("raw") or {}
    medians = raw.get("process_medians_ns")
    if not medians or not medians.get("none"):
        return []
    plt = _pyplot()
    variants = [v for v in raw["variants"] if v != "none" and any(medians[v].values())]
    ops = [op for op in medians["none"] if medians["none"][op]]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        ratios = []
        for op in ops:
            base = sorted(medians["none"][op])[len(medians["none"][op]) // 2]
            vals = sorted(medians[variant][op])
            ratios.append(vals[len(vals) // 2] / base if vals and base else 0.0)
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(ops))]
        ax.bar(xs, ratios, width, label=raw["labels"].get(variant, variant))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(ops)))
    ax.set_xticklabels(ops, rotation=0)
    ax.set_yscale("log")
    ax.set_ylabel("time per operation / unprotected (log)")
    ax.set_title("Overhead ratio per operation (median of process medians)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out / "micro-overhead.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _invocation(section: dict[str, Any], out: Path) -> list[Path]:
    raw = section.get("raw") or {}
    latencies: dict[str, dict[str, list[float]]] = raw.get("latencies_ms") or {}
    if not latencies:
        return []
    plt = _pyplot()
    handlers = list(latencies)
    variants = raw.get("variants") or sorted({v for h in latencies.values() for v in h})
    fig, axes = plt.subplots(1, len(handlers), figsize=(4.2 * len(handlers), 4.4))
    if len(handlers) == 1:
        axes = [axes]
    for ax, handler in zip(axes, handlers, strict=True):
        present = [v for v in variants if latencies[handler].get(v)]
        data = [latencies[handler][v] for v in present]
        ax.boxplot(data, showfliers=True, whis=(1, 99))
        ax.set_xticks(range(1, len(present) + 1))
        ax.set_xticklabels(present, rotation=30, ha="right", fontsize=8)
        ax.set_title(handler, fontsize=9)
        ax.set_ylabel("invocation latency (ms)")
    fig.suptitle("End-to-end invocation latency in the local sandbox (whiskers p1-p99)")
    fig.tight_layout()
    path = out / "invocation-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths = [path]

    fig, ax = plt.subplots(figsize=(9, 4.2))
    others = [v for v in variants if v != "unprotected"]
    width = 0.8 / max(1, len(others))
    for i, variant in enumerate(others):
        ratios = []
        for handler in handlers:
            base = latencies[handler].get("unprotected") or []
            vals = latencies[handler].get(variant) or []
            if base and vals:
                ratios.append(
                    sorted(vals)[len(vals) // 2] / sorted(base)[len(base) // 2]
                )
            else:
                ratios.append(0.0)
        xs = [j + (i - (len(others) - 1) / 2) * width for j in range(len(handlers))]
        ax.bar(xs, ratios, width, label=variant)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(handlers)))
    ax.set_xticklabels(handlers, fontsize=8)
    ax.set_ylabel("p50 latency / unprotected p50")
    ax.set_title("Invocation overhead ratio (p50)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "invocation-overhead.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _coldstart(section: dict[str, Any], out: Path) -> list[Path]:
    raw = section.get("raw") or {}
    samples: dict[str, list[float]] = raw.get("samples_ms") or {}
    samples = {k: v for k, v in samples.items() if v}
    if not samples:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    names = list(samples)
    ax.boxplot([samples[n] for n in names], orientation="horizontal", whis=(1, 99))
    ax.set_yticks(range(1, len(names) + 1))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("milliseconds")
    ax.set_title("Cold start: import + install, and sandbox init")
    fig.tight_layout()
    path = out / "coldstart.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


DRAWERS: dict[str, Callable[[dict[str, Any], Path], list[Path]]] = {
    "micro": _micro,
    "invocation": _invocation,
    "coldstart": _coldstart,
}


def draw_all(results: dict[str, Any], out: Path) -> dict[str, list[Path]]:
    """Draw every chart the sections of ``results`` have data for."""
    drawn: dict[str, list[Path]] = {}
    for name, drawer in DRAWERS.items():
        section = results["sections"].get(name)
        if not section:
            continue
        try:
            paths = drawer(section, out)
        except Exception:  # a chart must not lose the numbers
            log.warning("chart for %s failed", name, exc_info=True)
            continue
        if paths:
            drawn[name] = paths
    return drawn
