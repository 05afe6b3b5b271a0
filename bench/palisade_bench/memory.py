"""Memory: RSS the guard adds to the function process, and the extension's RSS.

Function process: fresh interpreters per variant, interleaved, each installing
its guard and running the same small workload (file reads, a loopback connect, a
subprocess) inside a number of invocations; VmRSS and VmHWM come from
``/proc/self/status`` at the end. "Added" is the variant's median minus the
unprotected median of the same run.

Extension: a sandbox with the layer and the extension runs a trivial handler a
number of times; the extension process's VmRSS and VmHWM are read from
``/proc/<pid>/status`` while it is frozen between invokes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from . import sandboxes, stats
from .children import clean_env, run_json
from .errors import BenchError
from .figures import Figure, judged, not_measured
from .settings import Plan

SECTION = "memory"
BUDGETED = (
    (
        "memory.added.palisade",
        "VmRSS added by Palisade (monitor)",
        "MB",
        "memory_added_mb",
    ),
    ("memory.extension_rss", "extension process VmRSS", "MB", "extension_rss_mb"),
)
_LABELS = {
    "palisade": "VmRSS added by Palisade (monitor)",
    "palisade-block": "VmRSS added by Palisade (block, policy allows the workload)",
    "zen": "VmRSS added by Aikido Zen (peer)",
    "palisade-runtime": "VmRSS added by Palisade (monitor), after the runtime "
    "client's imports (as on Lambda)",
}


def _env(variant: str, workdir: Path) -> dict[str, str]:
    if variant.startswith("palisade"):
        env = {
            "PALISADE_EXTENSION_SOCKET": str(workdir / "absent.sock"),
            "PALISADE_EXTENSION_KEY": str(workdir / "absent.key"),
            "PALISADE_OUTPUT": "file:/dev/null",
            "PALISADE_MODE": "monitor",
        }
        if variant == "palisade-block":
            env["PALISADE_MODE"] = "block"
            env["PALISADE_POLICY"] = json.dumps(
                {
                    "version": 1,
                    "file": {"allow": [{"path": f"{workdir}/**", "access": ["read"]}]},
                    "process": {"allow": [{"exec": "true"}]},
                    "network": {"allow": [{"cidr": "127.0.0.0/8"}]},
                }
            )
        return clean_env(env)
    if variant == "zen":
        return clean_env({"AIKIDO_BLOCK": "true", "AIKIDO_TMP_DIR": str(workdir)})
    return clean_env()


def _function_process(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    variants = ["none", "palisade", "palisade-block"]
    if plan.peer_available:
        variants.append("zen")
    variants += ["none-runtime", "palisade-runtime"]
    rss: dict[str, list[float]] = {v: [] for v in variants}
    hwm: dict[str, list[float]] = {v: [] for v in variants}
    failures: dict[str, str] = {}
    invocations = 50 if not plan.quick else 10
    with tempfile.TemporaryDirectory(prefix="palisade-bench-mem-") as tmp:
        for i in range(plan.memory_processes):
            shift = i % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                if variant in failures:
                    continue
                workdir = Path(tmp) / f"{variant}-{i}"
                try:
                    got = run_json(
                        "process_child.py",
                        ["memory", variant, str(workdir), str(invocations)],
                        _env(variant, workdir),
                        timeout=120,
                        cwd=Path(tmp),
                    )
                except BenchError as exc:
                    failures[variant] = str(exc)
                    continue
                rss[variant].append(got["after_kb"]["VmRSS"] / 1024)
                hwm[variant].append(got["after_kb"]["VmHWM"] / 1024)

    figures: list[Figure] = []
    if not rss["none"]:
        raise BenchError(failures.get("none", "the unprotected process failed"))
    base = stats.median(rss["none"])
    base_hwm = stats.median(hwm["none"])
    figures.append(
        Figure(
            id="memory.rss.none",
            section=SECTION,
            name="function process VmRSS, no guard (context)",
            value=base,
            unit="MB",
            median=base,
            p99=stats.quantile(rss["none"], 0.99),
            n=len(rss["none"]),
            spread=stats.spread(rss["none"]),
            context=f"VmHWM {base_hwm:.1f} MB; after {invocations} invocations",
        )
    )
    for variant in variants[1:]:
        if variant == "none-runtime":
            continue
        fid = f"memory.added.{variant}"
        budget = "memory_added_mb" if variant == "palisade" else None
        base_name = "none-runtime" if variant.endswith("-runtime") else "none"
        if not rss[base_name]:
            reason = failures.get(base_name, "its baseline failed")
            figures.append(
                not_measured(fid, SECTION, _LABELS[variant], "MB", reason, budget)
            )
            continue
        base = stats.median(rss[base_name])
        base_hwm = stats.median(hwm[base_name])
        if not rss[variant]:
            reason = failures.get(variant, "no samples")
            figures.append(
                not_measured(fid, SECTION, _LABELS[variant], "MB", reason, budget)
            )
            continue
        value = stats.median(rss[variant])
        added_hwm = stats.median(hwm[variant]) - base_hwm
        figures.append(
            judged(
                Figure(
                    id=fid,
                    section=SECTION,
                    name=_LABELS[variant],
                    value=value - base,
                    unit="MB",
                    median=value,
                    p99=stats.quantile(rss[variant], 0.99),
                    n=len(rss[variant]),
                    spread=stats.spread(rss[variant]),
                    ratio=stats.ratio(value, base),
                    baseline=base,
                    context=f"VmHWM added {added_hwm:.1f} MB; {value:.1f} MB vs "
                    f"{base:.1f} MB unprotected",
                ),
                budget,
            )
        )
    return figures, {"vmrss_mb": rss, "vmhwm_mb": hwm, "failures": failures}


def _extension(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    name = BUDGETED[1][1]
    try:
        sandbox_mod = sandboxes.require_sandbox()
        rss: list[float] = []
        hwm: list[float] = []
        invocations = 100 if not plan.quick else 10
        with (
            sandboxes.opt_dirs() as opts,
            tempfile.TemporaryDirectory(prefix="palisade-bench-extmem-") as tmp,
        ):
            code = Path(tmp) / "code"
            code.mkdir()
            (code / "app.py").write_text(sandboxes.TRIVIAL_APP)
            env = sandboxes.palisade_env(opts.full, "monitor", Path(tmp) / "b.jsonl")
            with sandbox_mod.Sandbox(
                "app.handler",
                code_dir=code,
                opt_dir=opts.full,
                env=env,
                moto=False,
                timeout=10,
            ) as box:
                for i in range(invocations):
                    result = box.invoke({"i": i})
                    if not result.ok:
                        raise BenchError(
                            f"the trivial handler failed with the extension: "
                            f"{result.status} {result.error}"
                        )
                for pid in box.extension_pids.values():
                    now, peak = sandboxes.rss_kb(pid)
                    if now is not None and peak is not None:
                        rss.append(now / 1024)
                        hwm.append(peak / 1024)
        if not rss:
            raise BenchError("no extension process was running to read /proc from")
    except BenchError as exc:
        return [
            not_measured(
                BUDGETED[1][0], SECTION, name, "MB", str(exc), "extension_rss_mb"
            )
        ], {}
    value = max(rss)
    return [
        judged(
            Figure(
                id=BUDGETED[1][0],
                section=SECTION,
                name=name,
                value=value,
                unit="MB",
                n=len(rss),
                context=f"VmHWM {max(hwm):.1f} MB; after {invocations} invocations "
                "of a trivial handler",
            ),
            "extension_rss_mb",
        )
    ], {"extension_vmrss_mb": rss, "extension_vmhwm_mb": hwm}


def measure(plan: Plan) -> dict[str, Any]:
    """Memory figures for the function process and the extension."""
    figures, raw = _function_process(plan)
    ext_figures, ext_raw = _extension(plan)
    return {"figures": figures + ext_figures, "raw": {**raw, **ext_raw}}
