"""The demo's report: the figures, as plain text and as an HTML page with SVG charts.

The figures are filled by the scenario from what the analyzer stored (alerts, trail,
profiles, invocations), what the stand-in servers observed (effects) and the
platform's REPORT durations (latency); this module only lays them out.
"""

from __future__ import annotations

import html
import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODES = ("alert", "block")

# The sandbox's stand-ins for /tmp and /var/task, shortened for reading (the JSON
# report keeps the signatures exactly as the analyzer stored them).
_SANDBOX_PATH = re.compile(r"/tmp/palisade-demo/[^/]+/sandboxes/[^/]+/(tmp|task)")


def short(signature: str) -> str:
    """A signature with the sandbox's /tmp and task paths written $TMP, $TASK_ROOT."""
    return _SANDBOX_PATH.sub(
        lambda m: "$TMP" if m.group(1) == "tmp" else "$TASK_ROOT", signature
    )


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class FunctionFigures:
    """One function's benign-traffic figures."""

    name: str
    title: str
    learn_invocations: int = 0
    profile_state: str = "unknown"
    signatures: int = 0
    policy_rules: int = 0
    replay_invocations: int = 0
    false_alerts: int = 0
    false_alert_signatures: list[str] = field(default_factory=list)
    alerted_benign_events: int = 0
    block_replay_invocations: int = 0
    blocked_benign_events: int = 0
    blocked_benign_targets: list[str] = field(default_factory=list)
    failed_benign: int = 0
    latency_unprotected_ms: list[float] = field(default_factory=list)
    latency_protected_ms: list[float] = field(default_factory=list)
    response_unprotected_ms: list[float] = field(default_factory=list)
    response_protected_ms: list[float] = field(default_factory=list)

    def latency(self, which: str, q: float, measure: str = "invoke") -> float:
        """A percentile of the invoke phase ("invoke") or response time ("response")."""
        values = {
            ("invoke", "unprotected"): self.latency_unprotected_ms,
            ("invoke", "protected"): self.latency_protected_ms,
            ("response", "unprotected"): self.response_unprotected_ms,
            ("response", "protected"): self.response_protected_ms,
        }[(measure, which)]
        return percentile(values, q)


@dataclass
class ModeResult:
    """One attack in one mode."""

    ran: bool = False
    skipped_reason: str = ""
    invocations: int = 0
    stored_invocations: int = 0
    alerted: bool = False
    alert_signatures: list[str] = field(default_factory=list)
    layer_alerted: int = 0
    blocked: bool = False
    blocked_rules: list[str] = field(default_factory=list)
    effect: str | None = None


@dataclass
class AttackFigures:
    """One attack across the modes."""

    id: str
    title: str
    function: str
    vector: str
    modes: dict[str, ModeResult] = field(default_factory=dict)


@dataclass
class DemoReport:
    """Everything the demo shows."""

    started_at: str
    network: str
    settings: dict[str, Any]
    functions: list[FunctionFigures] = field(default_factory=list)
    attacks: list[AttackFigures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------- verdicts

    def attack_ok(self, attack: AttackFigures) -> bool:
        """Detected in every mode it ran; in block mode stopped before its effect."""
        ran = [m for m in attack.modes.values() if m.ran]
        if not ran:
            return False
        if not all(m.alerted for m in ran):
            return False
        block = attack.modes.get("block")
        return block is None or not block.ran or (block.blocked and not block.effect)

    @property
    def all_detected(self) -> bool:
        return all(m.alerted for a in self.attacks for m in a.modes.values() if m.ran)

    @property
    def all_stopped(self) -> bool:
        blocks = [a.modes["block"] for a in self.attacks if "block" in a.modes]
        return all(m.blocked and m.effect is None for m in blocks if m.ran)

    @property
    def false_alerts(self) -> int:
        return sum(f.false_alerts for f in self.functions)

    @property
    def ok(self) -> bool:
        ran_any = any(m.ran for a in self.attacks for m in a.modes.values())
        return (
            ran_any
            and self.all_detected
            and self.all_stopped
            and not (
                self.false_alerts
                or any(f.blocked_benign_events for f in self.functions)
            )
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: attacks detected and stopped, false alerts, overall verdict."""
        detected = sum(
            1
            for a in self.attacks
            if any(m.ran for m in a.modes.values())
            and all(m.alerted for m in a.modes.values() if m.ran)
        )
        blocks = [a.modes["block"] for a in self.attacks if "block" in a.modes]
        ran_block = [m for m in blocks if m.ran]
        stopped = sum(1 for m in ran_block if m.blocked and m.effect is None)
        skipped = sum(
            1 for a in self.attacks if not any(m.ran for m in a.modes.values())
        )
        not_run = f" ({skipped} not run)" if skipped else ""
        return (
            f"Summary: {detected}/{len(self.attacks)} attacks detected{not_run}, "
            f"{stopped}/{len(ran_block)} stopped in block mode, "
            f"{self.false_alerts} false alerts after learning -> "
            f"{'OK' if self.ok else 'NOT OK'}"
        )

    # ----------------------------------------------------------------- text

    def text(self) -> str:
        """The report as plain text (what the terminal shows)."""
        out: list[str] = []
        out.append(f"Palisade demo - {self.started_at}")
        out.append(f"network: {self.network}")
        out.append(
            "learning: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))
        )
        out.append("")
        out.append("Benign traffic (figures from the analyzer's store)")
        head = (
            f"  {'function':<18}{'learned':>8} {'profile':<9}{'rules':>6}"
            f"{'replayed':>9}{'false alerts':>13}{'blk replay':>11}"
            f"{'false blocks':>13}{'failed':>7}"
        )
        out.append(head)
        for f in self.functions:
            out.append(
                f"  {f.name:<18}{f.learn_invocations:>8} {f.profile_state:<9}"
                f"{f.policy_rules:>6}{f.replay_invocations:>9}{f.false_alerts:>13}"
                f"{f.block_replay_invocations:>11}{f.blocked_benign_events:>13}"
                f"{f.failed_benign:>7}"
            )
            for sig in f.false_alert_signatures[:5]:
                out.append(f"      false alert: {short(sig)}")
            for target in f.blocked_benign_targets[:5]:
                out.append(f"      blocked benign: {short(target)}")
        out.append("")
        out.append("Attacks (alerted: the analyzer raised an alert; blocked: the layer")
        out.append("refused an operation; effect: what the stand-ins observed;")
        out.append("$TMP and $TASK_ROOT: the sandbox's /tmp and /var/task)")
        for a in self.attacks:
            ran = any(m.ran for m in a.modes.values())
            mark = ("PASS" if self.attack_ok(a) else "FAIL") if ran else "SKIP"
            out.append(f"  [{mark}] {a.id} on {a.function}: {a.title}")
            out.append(f"         via {a.vector}")
            for mode in MODES:
                m = a.modes.get(mode)
                if m is None:
                    continue
                if not m.ran:
                    out.append(f"         {mode:<6} not run: {m.skipped_reason}")
                    continue
                alerted = "yes" if m.alerted else "NO"
                blocked = (
                    f"yes ({', '.join(m.blocked_rules[:3])})" if m.blocked else "no"
                )
                effect = m.effect or "none"
                out.append(
                    f"         {mode:<6} alerted {alerted:<3}  blocked {blocked}"
                )
                out.append(f"                effect: {effect}")
                if m.alert_signatures:
                    sigs = ", ".join(short(x) for x in m.alert_signatures[:3])
                    more = len(m.alert_signatures) - 3
                    extra = f" (+{more} more)" if more > 0 else ""
                    out.append(f"                alerts: {sigs}{extra}")
        out.append("")
        out.append("Latency added by Palisade (same benign events, warm invocations;")
        out.append("response: until the function's answer (platform.runtimeDone);")
        out.append("invoke phase: until runtime and extensions wait again (REPORT))")
        out.append(
            f"  {'function':<18}{'measure':<10}{'n':>4}{'plain p50':>11}{'p95':>9}"
            f"{'protected p50':>15}{'p95':>9}{'added p50':>11}{'added p95':>11}"
        )
        for f in self.functions:
            for measure in ("response", "invoke"):
                up50 = f.latency("unprotected", 0.5, measure)
                up95 = f.latency("unprotected", 0.95, measure)
                pr50 = f.latency("protected", 0.5, measure)
                pr95 = f.latency("protected", 0.95, measure)
                n = len(
                    f.response_protected_ms
                    if measure == "response"
                    else f.latency_protected_ms
                )
                out.append(
                    f"  {f.name:<18}{measure:<10}{n:>4}{up50:>9.1f}ms"
                    f"{up95:>7.1f}ms{pr50:>13.1f}ms{pr95:>7.1f}ms"
                    f"{pr50 - up50:>+9.1f}ms{pr95 - up95:>+9.1f}ms"
                )
        out.append("")
        out.append(self.summary())
        if self.phase_seconds:
            out.append(
                "Timings: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in self.phase_seconds.items())
            )
        for note in self.notes:
            out.append(f"Note: {note}")
        return "\n".join(out)

    # ----------------------------------------------------------------- html

    def html(self) -> str:
        """A self-contained HTML page with the same figures and SVG charts."""
        esc = html.escape
        rows = []
        for f in self.functions:
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{esc(str(v))}</td>"
                    for v in (
                        f.name,
                        f.title,
                        f.learn_invocations,
                        f.profile_state,
                        f.signatures,
                        f.policy_rules,
                        f.replay_invocations,
                        f.false_alerts,
                        f.block_replay_invocations,
                        f.blocked_benign_events,
                    )
                )
                + "</tr>"
            )
        attack_rows = []
        for a in self.attacks:
            cells = [f"<td>{esc(a.id)}</td><td>{esc(a.function)}</td>"]
            cells.append(f"<td>{esc(a.vector)}</td>")
            for mode in MODES:
                m = a.modes.get(mode)
                if m is None or not m.ran:
                    reason = m.skipped_reason if m else ""
                    cells.append(
                        f'<td colspan="3" class="skip">not run {esc(reason)}</td>'
                    )
                    continue
                cells.append(_cell(m.alerted, "alerted", "missed"))
                if mode == "block":
                    cells.append(_cell(m.blocked, "blocked", "not blocked"))
                else:
                    cells.append(f"<td>{m.layer_alerted} flagged events</td>")
                bad = mode == "block" and m.effect is not None
                cls = "bad" if bad else ("warn" if m.effect else "good")
                cells.append(f'<td class="{cls}">{esc(m.effect or "none")}</td>')
            if any(m.ran for m in a.modes.values()):
                mark = "PASS" if self.attack_ok(a) else "FAIL"
                cells.append(_cell(mark == "PASS", mark, mark))
            else:
                cells.append('<td class="skip">SKIP</td>')
            attack_rows.append("<tr>" + "".join(cells) + "</tr>")
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.notes)
        summary = esc(self.summary())
        return _PAGE.format(
            started=esc(self.started_at),
            network=esc(self.network),
            settings=esc(json.dumps(self.settings)),
            summary=summary,
            function_rows="".join(rows),
            attack_rows="".join(attack_rows),
            latency_svg=latency_svg(self.functions, "response")
            + latency_svg(self.functions, "invoke"),
            benign_svg=benign_svg(self.functions),
            attack_svg=attack_svg(self),
            notes=notes,
            text=esc(self.text()),
        )

    def write(self, folder: Path) -> tuple[Path, Path, Path]:
        """Write report.txt, report.json and report.html into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        text = folder / "report.txt"
        data = folder / "report.json"
        page = folder / "report.html"
        text.write_text(self.text() + "\n")
        data.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        page.write_text(self.html())
        return text, data, page


def _cell(good: bool, yes: str, no: str) -> str:
    return f'<td class="{"good" if good else "bad"}">{yes if good else no}</td>'


# ------------------------------------------------------------------- charts

_COLORS = {"unprotected": "#8da0cb", "protected": "#fc8d62"}


def latency_svg(functions: list[FunctionFigures], measure: str = "invoke") -> str:
    """Grouped bars: p50 and p95 per function, unprotected beside protected."""
    groups = [
        (
            f.name,
            q,
            f.latency("unprotected", q, measure),
            f.latency("protected", q, measure),
        )
        for f in functions
        for q in (0.5, 0.95)
    ]
    top = max([max(u, p) for _, _, u, p in groups] + [1.0]) * 1.15
    width, height, left, bottom = 720, 300, 60, 60
    plot_h = height - bottom - 20
    slot = (width - left - 20) / max(len(groups), 1)
    bar = slot * 0.35
    parts = [_axis(width, height, left, bottom, top, "ms")]
    for i, (name, q, unprotected, protected) in enumerate(groups):
        x = left + i * slot + slot * 0.12
        for j, (label, value) in enumerate(
            (("unprotected", unprotected), ("protected", protected))
        ):
            h = plot_h * value / top
            y = height - bottom - h
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{_COLORS[label]}"><title>{name} {label} '
                f"p{int(q * 100)}: {value:.1f} ms</title></rect>"
            )
            parts.append(
                f'<text x="{x + j * bar + bar / 2:.1f}" y="{y - 3:.1f}" '
                f'font-size="10" text-anchor="middle">{value:.0f}</text>'
            )
        parts.append(
            f'<text x="{x + bar:.1f}" y="{height - bottom + 14}" font-size="11" '
            f'text-anchor="middle">p{int(q * 100)}</text>'
        )
        if q == 0.5:
            parts.append(
                f'<text x="{x + slot:.1f}" y="{height - bottom + 30}" font-size="12" '
                f'text-anchor="middle">{html.escape(name)}</text>'
            )
    parts.append(_legend(width - 220, 14, list(_COLORS.items())))
    title = "Response time" if measure == "response" else "Invoke phase"
    return _svg(width, height, parts, f"{title}, warm invocations, ms")


def benign_svg(functions: list[FunctionFigures]) -> str:
    """Bars per function: benign invocations replayed and false alerts raised."""
    series = [
        ("replayed (alert mode)", "#66c2a5", [f.replay_invocations for f in functions]),
        (
            "replayed (block mode)",
            "#a6d854",
            [f.block_replay_invocations for f in functions],
        ),
        ("false alerts", "#e41a1c", [f.false_alerts for f in functions]),
        ("false blocks", "#984ea3", [f.blocked_benign_events for f in functions]),
    ]
    top = max([max(v) for _, _, v in series if v] + [1]) * 1.15
    width, height, left, bottom = 720, 260, 60, 50
    plot_h = height - bottom - 20
    slot = (width - left - 20) / max(len(functions), 1)
    bar = slot * 0.8 / len(series)
    parts = [_axis(width, height, left, bottom, top, "count")]
    for i, f in enumerate(functions):
        x0 = left + i * slot + slot * 0.1
        for j, (label, color, values) in enumerate(series):
            value = values[i]
            h = plot_h * value / top
            y = height - bottom - h
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" '
                f'height="{max(h, 0.5):.1f}" fill="{color}"><title>{label}: {value}'
                "</title></rect>"
            )
            parts.append(
                f'<text x="{x0 + j * bar + bar / 2:.1f}" y="{y - 3:.1f}" '
                f'font-size="10" text-anchor="middle">{value}</text>'
            )
        parts.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{height - bottom + 18}" '
            f'font-size="12" text-anchor="middle">{html.escape(f.name)}</text>'
        )
    parts.append(_legend(width - 200, 14, [(s[0], s[1]) for s in series]))
    return _svg(width, height, parts, "Benign traffic after learning")


def attack_svg(report: DemoReport) -> str:
    """A matrix: one row per attack, alerted / blocked / effect per mode."""
    columns = [
        ("alert", "alerted"),
        ("alert", "effect"),
        ("block", "alerted"),
        ("block", "blocked"),
        ("block", "effect"),
    ]
    cell_w, cell_h, left, top = 96, 24, 200, 44
    width = left + cell_w * len(columns) + 20
    height = top + cell_h * len(report.attacks) + 20
    parts = []
    for j, (mode, what) in enumerate(columns):
        parts.append(
            f'<text x="{left + j * cell_w + cell_w / 2}" y="{top - 8}" font-size="11" '
            f'text-anchor="middle">{mode}: {what}</text>'
        )
    for i, attack in enumerate(report.attacks):
        y = top + i * cell_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" font-size="12" text-anchor="end">'
            f"{html.escape(attack.id)}</text>"
        )
        for j, (mode, what) in enumerate(columns):
            m = attack.modes.get(mode)
            if m is None or not m.ran:
                color, label = "#dddddd", "not run"
            elif what == "effect":
                happened = m.effect is not None
                good = not happened if mode == "block" else True
                color = (
                    "#4daf4a"
                    if good and not happened
                    else ("#ffb74d" if good else "#e41a1c")
                )
                label = "happened" if happened else "none"
            else:
                value = m.alerted if what == "alerted" else m.blocked
                color, label = ("#4daf4a", "yes") if value else ("#e41a1c", "no")
            parts.append(
                f'<rect x="{left + j * cell_w + 1}" y="{y + 1}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill="{color}"/>'
                f'<text x="{left + j * cell_w + cell_w / 2}" y="{y + 16}" '
                f'font-size="11" text-anchor="middle">{label}</text>'
            )
    return _svg(width, height, parts, "Attacks")


def _axis(
    width: int, height: int, left: int, bottom: int, top: float, unit: str
) -> str:
    plot_h = height - bottom - 20
    lines = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
        f'y2="{height - bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="20" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
    ]
    for k in range(5):
        value = top * k / 4
        y = height - bottom - plot_h * k / 4
        lines.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{value:.0f}</text>"
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" '
            'stroke="#eee"/>'
        )
    lines.append(
        f'<text x="14" y="{20 + plot_h / 2:.0f}" font-size="11" '
        f'transform="rotate(-90 14 {20 + plot_h / 2:.0f})">{unit}</text>'
    )
    return "".join(lines)


def _legend(x: float, y: float, items: list[tuple[str, str]]) -> str:
    parts = []
    for i, (label, color) in enumerate(items):
        parts.append(
            f'<rect x="{x}" y="{y + i * 16}" width="12" height="12" fill="{color}"/>'
            f'<text x="{x + 18}" y="{y + i * 16 + 10}" font-size="11">'
            f"{html.escape(label)}</text>"
        )
    return "".join(parts)


def _svg(width: int, height: int, parts: list[str], title: str) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
        f"<title>{html.escape(title)}</title>{body}</svg>"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Palisade demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222;
       max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f4f4f4; }}
.good {{ background: #d9f2d9; }} .bad {{ background: #f8d0d0; }}
.warn {{ background: #ffe8c2; }} .skip {{ color: #888; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 12px; }}
</style></head><body>
<h1>Palisade demo report</h1>
<p>{started} &middot; network: {network}</p>
<p><b>{summary}</b></p>
<h2>Benign traffic</h2>
<p>Figures from the analyzer's store. False alerts: analyzer alerts whose evidence
names one of the benign requests replayed after learning; false blocks: trail events
of those requests with verdict blocked.</p>
{benign_svg}
<table><tr><th>function</th><th>what it does</th><th>learned invocations</th>
<th>profile</th><th>signatures</th><th>policy rules</th><th>replayed (alert mode)</th>
<th>false alerts</th><th>replayed (block mode)</th><th>false blocks</th></tr>
{function_rows}</table>
<h2>Attacks</h2>
<p>Alerted: an analyzer alert names one of the attack's requests. Blocked: the layer
refused an operation (trail verdict). Effect: what the stand-in servers, the marker
files or the function's answer showed.</p>
{attack_svg}
<table><tr><th>attack</th><th>function</th><th>vector</th>
<th>alert mode: alerted</th><th>layer</th><th>effect</th>
<th>block mode: alerted</th><th>blocked</th><th>effect</th><th>verdict</th></tr>
{attack_rows}</table>
<h2>Latency added</h2>
<p>The same benign events run without and with Palisade, warm invocations. First
chart: response time (until the function's answer, platform.runtimeDone); second:
the whole invoke phase (until the runtime and the extensions wait for the next
event, as in the REPORT line).</p>
{latency_svg}
<h2>Notes</h2><ul>{notes}</ul>
<p>Learning settings: <code>{settings}</code></p>
<h2>Text report</h2><pre>{text}</pre>
</body></html>
"""
