"""One benchmark run: every section in turn, then the results file, page and charts."""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

from . import machine
from .errors import BenchError
from .figures import Figure, not_measured
from .settings import REPO, Plan

log = logging.getLogger(__name__)

# section -> (module, one-line title)
SECTION_MODULES: dict[str, tuple[str, str]] = {
    "micro": (
        "palisade_bench.micro",
        "Cost per audit event and per observed operation",
    ),
    "invocation": ("palisade_bench.invocation", "Realistic handlers, end to end"),
    "coldstart": ("palisade_bench.coldstart", "Cold start"),
    "memory": ("palisade_bench.memory", "Memory"),
    "layer": ("palisade_bench.layersize", "Layer size"),
    "analyzer": (
        "palisade_bench.analyzer",
        "Analyzer throughput and detection latency",
    ),
}


def run(plan: Plan) -> dict[str, Any]:
    """Run the sections of ``plan``; write results JSON, the page and the charts.

    Returns:
        The results document (also written under ``plan.results_dir``).
    """
    started = time.monotonic()
    plan.started_at = started
    results: dict[str, Any] = {
        "schema": "palisade.bench/1",
        "quick": plan.quick,
        "machine": machine.describe(REPO),
        "peer": machine.package("aikido-zen") if plan.peer_available else None,
        "sections": {},
    }
    for name in plan.sections:
        results["sections"][name] = _run_section(name, plan)
    results["machine"]["load_average_end"] = machine.load_average()
    results["elapsed_s"] = round(time.monotonic() - started, 1)

    path = write_results(results, plan)
    results["results_file"] = str(path)
    from . import report

    previous = report.previous_results(plan.results_dir, exclude=path)
    report.write(results, plan, previous)
    return results


def _run_section(name: str, plan: Plan) -> dict[str, Any]:
    module_name, title = SECTION_MODULES[name]
    began = time.monotonic()
    log.info("section %s: starting", name)
    module: Any = None
    try:
        module = importlib.import_module(module_name)
        section: dict[str, Any] = module.measure(plan)
    except BenchError as exc:
        section = {"figures": _missing(name, module, str(exc)), "raw": {}}
    except Exception as exc:  # a broken component must not hide the others
        log.warning("section %s failed:\n%s", name, traceback.format_exc())
        reason = f"the harness hit {type(exc).__name__}: {exc}"
        section = {"figures": _missing(name, module, reason), "raw": {}}
    section["title"] = title
    section["elapsed_s"] = round(time.monotonic() - began, 1)
    section["figures"] = [
        f.as_dict() if isinstance(f, Figure) else f for f in section["figures"]
    ]
    log.info("section %s: done in %.1f s", name, section["elapsed_s"])
    return section


def _missing(name: str, module: Any, reason: str) -> list[Figure]:
    """Every budgeted figure of a section that failed as a whole, with the reason."""
    budgeted = getattr(module, "BUDGETED", ())
    if not budgeted:
        return [not_measured(f"{name}.all", name, f"{name}: every figure", "", reason)]
    return [
        not_measured(fid, name, label, unit, reason, budget_key)
        for fid, label, unit, budget_key in budgeted
    ]


def write_results(results: dict[str, Any], plan: Plan) -> Path:
    """Write ``results`` as a new, timestamped JSON file; earlier files are kept."""
    plan.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = (results["machine"].get("git_commit") or "nogit")[:10]
    suffix = "-quick" if plan.quick else ""
    path = plan.results_dir / f"{stamp}-{commit}{suffix}.json"
    path.write_text(json.dumps(_rounded(results), indent=1) + "\n")
    return path


def _rounded(value: Any) -> Any:
    """``value`` with floats rounded to 4 decimals (the files stay small)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
