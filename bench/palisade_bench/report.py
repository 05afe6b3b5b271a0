"""docs/benchmarks.md from a results document: tables, charts, method, machine."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .settings import Plan

log = logging.getLogger(__name__)

METHOD = """\
## How it is measured

- **One run, interleaved.** Every ratio compares a variant with the unprotected
  baseline measured in the same run, with the variants alternating (their order
  rotates each round), so that a change in the machine's load hits all of them
  alike. Absolute times are context only: they depend on this machine.
- **Fresh processes.** Audit hooks cannot be removed, so each per-event and
  per-operation variant runs in its own interpreter: K processes per variant, each
  timing every operation for several repetitions of a tight loop; the figure is the
  median of the process medians. "Added" is that median minus the unprotected one.
- **Noise is checked, not hidden.** Each figure carries its spread (interquartile
  range over median across processes or samples). When a spread is above 10 %, the
  harness measures more rounds, up to a fixed bound, and the page flags what stayed
  noisy. A negative "added" cost means the difference is inside the noise.
- **Realistic handlers** run end to end in Palisade's local sandbox (the real
  runtime client, the local Runtime API), each invocation timed from the request
  the sandbox hands out to the response it receives; p50 and p99 over the
  repetitions.
- **Budgets** are printed beside each figure with ✅ (met) or ❌ (missed).
  Figures that could not be taken say why, instead of a number.
- **The peer**, Aikido Zen, is configured as described under "The peer"; it has no
  audit hook, so its cost per uninteresting audit event is not comparable and
  shown only as a check that it adds nothing there.
"""


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if unit in ("ns",) and magnitude >= 10_000:
        return f"{value / 1000:,.1f} µs"
    if unit == "events/s":
        return f"{value:,.0f} {unit}"
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _mark(figure: dict[str, Any]) -> str:
    if figure.get("passed") is None:
        return ""
    return "✅ pass" if figure["passed"] else "❌ miss"


def _ratio(figure: dict[str, Any]) -> str:
    value = figure.get("ratio")
    return "—" if value is None else f"{value:.3f}x"


def _spread(figure: dict[str, Any]) -> str:
    value = figure.get("spread")
    if value is None:
        return "—"
    flag = " ⚠" if value > 0.10 else ""
    return f"{value * 100:.1f} %{flag}"


def figure_rows(figures: list[dict[str, Any]]) -> list[str]:
    """Markdown table rows for ``figures`` (measured ones; missing ones elsewhere)."""
    rows = [
        "| figure | value | budget | | median | p99 | n | spread | ratio | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        if f["status"] != "measured":
            continue
        rows.append(
            "| {name} | {value} | {budget} | {mark} | {median} | {p99} | {n} | "
            "{spread} | {ratio} | {notes} |".format(
                name=f["name"],
                value=_fmt(f["value"], f["unit"]),
                budget=f.get("budget") or "",
                mark=_mark(f),
                median=_fmt(f.get("median"), f["unit"]),
                p99=_fmt(f.get("p99"), f["unit"]),
                n=f.get("n") if f.get("n") is not None else "—",
                spread=_spread(f),
                ratio=_ratio(f),
                notes=(f.get("context") or "").replace("|", "/"),
            )
        )
    return rows


def _missing_lines(figures: list[dict[str, Any]]) -> list[str]:
    """Figures not measured, grouped by reason so one cause is said once."""
    by_reason: dict[str, list[str]] = {}
    for f in figures:
        if f["status"] != "measured":
            by_reason.setdefault(f["reason"], []).append(f["name"])
    lines = []
    for reason, names in by_reason.items():
        shown = "; ".join(names[:4]) + (
            f"; and {len(names) - 4} more" if len(names) > 4 else ""
        )
        lines += ["", f"**Not measured** ({shown}): {reason}"]
    return lines


def previous_results(results_dir: Path, exclude: Path) -> dict[str, Any] | None:
    """The latest earlier full run in ``results_dir``, for the comparison column."""
    if not results_dir.is_dir():
        return None
    candidates = sorted(
        p
        for p in results_dir.glob("*.json")
        if p != exclude and not p.name.endswith("-quick.json")
    )
    for path in reversed(candidates):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("skipping unreadable results file %s", path)
            continue
        data["results_file"] = str(path)
        return data
    return None


def _budgeted(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        f
        for section in results["sections"].values()
        for f in section["figures"]
        if f.get("budget")
    ]


def _previous_value(previous: dict[str, Any] | None, fid: str) -> str:
    if not previous:
        return "—"
    for section in previous.get("sections", {}).values():
        for f in section.get("figures", []):
            if f.get("id") == fid and f.get("value") is not None:
                return _fmt(f["value"], f["unit"])
    return "—"


def _relpath(target: Path, start: Path) -> str:
    return os.path.relpath(target, start).replace(os.sep, "/")


def render(
    results: dict[str, Any],
    plan: Plan,
    charts: dict[str, list[Path]],
    previous: dict[str, Any] | None,
) -> str:
    """The whole Markdown page."""
    m = results["machine"]
    docs_dir = plan.docs_path.parent
    lines = [
        "# Benchmarks: what Palisade costs a function",
        "",
        "Generated by `make bench` (`palisade bench`); do not edit by hand: the next "
        "run rewrites this page. Raw numbers: "
        f"`{_relpath(Path(results['results_file']), docs_dir)}`.",
        "",
    ]
    if results.get("quick"):
        lines += [
            "> **Quick run** (`palisade bench --quick`): tiny repetition counts, "
            "for checking the harness only. These numbers are not the benchmark.",
            "",
        ]
    lines += [
        "Run it with `make bench` (the full run, under ten minutes on two cores), "
        "`palisade bench --quick` (tiny counts, a check of the harness), "
        "`--only micro,invocation,...` for some sections, `--out DIR` to write "
        "elsewhere. Each run adds a results file under `bench/results/`; earlier "
        'ones are kept, and the latest earlier full run fills the "previous run" '
        "column.",
        "",
        "## Machine",
        "",
        f"- date (UTC): {m['date']}; git commit: `{m.get('git_commit') or 'unknown'}`"
        + (" (with uncommitted changes)" if m.get("git_dirty") else ""),
        f"- CPU: {m['cpu_model']}, {m['nproc']} cores (nproc); memory: "
        f"{m.get('memory_mb')} MB; kernel {m['kernel']}",
        f"- Python {m['python']} ({m['python_implementation']}); one `lstat` system "
        f"call costs {m.get('lstat_us', '?')} µs here (context for per-operation "
        "figures: each system call a guard adds costs about this much)",
        f"- load average at start {m.get('load_average_start')}, at end "
        f"{m.get('load_average_end')}; run took {results.get('elapsed_s')} s",
        "- not AWS Lambda: absolute times will differ there; the ratios are the point.",
        "",
        "## Budgets at a glance",
        "",
        _tally(results),
        "",
        "| figure | value | budget | | p99 | n | spread | previous run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in _budgeted(results):
        if f["status"] != "measured":
            lines.append(f"| {f['name']} | not measured: {f['reason']} | | | | | | |")
            continue
        lines.append(
            f"| {f['name']} | {_fmt(f['value'], f['unit'])} | {f.get('budget') or ''} "
            f"| {_mark(f)} | {_fmt(f.get('p99'), f['unit'])} | "
            f"{f.get('n') if f.get('n') is not None else '—'} | {_spread(f)} | "
            f"{_previous_value(previous, f['id'])} |"
        )
    if previous:
        lines += [
            "",
            "Previous run: "
            f"`{_relpath(Path(previous['results_file']), docs_dir)}` "
            f"(commit `{(previous.get('machine') or {}).get('git_commit', '?')}`).",
        ]
    lines.append("")
    lines += _not_measured_summary(results)

    for name, section in results["sections"].items():
        lines += [f"## {section['title']}", ""]
        if section.get("notes"):
            lines += [section["notes"], ""]
        if name in charts:
            for chart in charts[name]:
                lines += [f"![{section['title']}]({_relpath(chart, docs_dir)})", ""]
        measured = [f for f in section["figures"] if f["status"] == "measured"]
        if measured:
            lines += figure_rows(measured)
        lines += _missing_lines(section["figures"])
        lines += ["", f"Section took {section.get('elapsed_s')} s.", ""]

    lines += _peer_lines(results)
    lines += [METHOD, ""]
    return "\n".join(lines)


def _peer_lines(results: dict[str, Any]) -> list[str]:
    """How the peer was configured, from the one module that configures it."""
    from . import zen_setup

    peer = results.get("peer") or {}
    version = peer.get("version") or "not installed"
    doc = (zen_setup.__doc__ or "").strip().replace("``", "`")
    # The first two paragraphs say where the module is used; the rest is the
    # configuration itself.
    body = doc.split("\n\n", 2)[-1].splitlines()
    return [
        "## The peer: Aikido Zen",
        "",
        f"Package `aikido-zen` {version}, in the same interpreter as the function. "
        "Its configuration, as `bench/palisade_bench/zen_setup.py` applies it:",
        *body,
        "",
    ]


def _tally(results: dict[str, Any]) -> str:
    """One line: how many budgeted figures met, missed, or were not measured."""
    budgeted = _budgeted(results)
    met = sum(1 for f in budgeted if f.get("passed") is True)
    missed = sum(1 for f in budgeted if f.get("passed") is False)
    absent = sum(1 for f in budgeted if f["status"] != "measured")
    return (
        f"{met} of {len(budgeted)} budgeted figures met their budget, {missed} "
        f"missed, {absent} not measured."
    )


def _not_measured_summary(results: dict[str, Any]) -> list[str]:
    """Every figure that could not be taken, grouped by reason, for the top."""
    by_reason: dict[str, list[str]] = {}
    for section in results["sections"].values():
        for f in section["figures"]:
            if f["status"] != "measured":
                by_reason.setdefault(f["reason"], []).append(f["name"])
    if not by_reason:
        return []
    lines = ["## Not measured", ""]
    for reason, names in by_reason.items():
        lines.append(f"- {len(names)} figure(s), e.g. *{names[0]}*: {reason}")
    return [*lines, ""]


def write(results: dict[str, Any], plan: Plan, previous: dict[str, Any] | None) -> Path:
    """Draw the charts and write the page; return the page's path."""
    from . import charts as charts_module

    plan.charts_dir.mkdir(parents=True, exist_ok=True)
    drawn = charts_module.draw_all(results, plan.charts_dir)
    page = render(results, plan, drawn, previous)
    plan.docs_path.parent.mkdir(parents=True, exist_ok=True)
    plan.docs_path.write_text(page)
    return plan.docs_path
