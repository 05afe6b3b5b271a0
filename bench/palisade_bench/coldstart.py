"""Cold start: import + install in the function process, and sandbox init.

Each sample is a fresh interpreter that imports nothing before the guard (the
worst case: a Lambda runtime has already imported json, socket and logging, which
the guard then finds cached). The in-process figure is the time from before
``import palisade`` to after ``palisade.install()`` returns; the whole-process
figure is the wall time of ``python -c`` doing just that, against ``python -c
pass``, so the ratio shows what a cold start pays in total. The sandbox figures
come from :mod:`palisade_bench.sandboxes`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import sandboxes, stats
from .children import clean_env
from .errors import BenchError
from .figures import NOISE_LIMIT, Figure, judged, not_measured
from .settings import Plan

SECTION = "coldstart"
BUDGETED = (
    (
        "coldstart.import_install.palisade",
        "import palisade + palisade.install(), in the function process",
        "ms",
        "import_install_ms",
    ),
    (
        "coldstart.extension_init",
        "extension init to its first /next",
        "ms",
        "extension_init_ms",
    ),
)

# variant -> (import statement, install statement)
_PROGRAMS = {
    "none": ("pass", "pass"),
    "palisade": ("import palisade", "palisade.install()"),
    "palisade-runtime": ("import palisade", "palisade.install()"),
    "palisade-nopyc": ("import palisade", "palisade.install()"),
    "zen": ("import aikido_zen", "aikido_zen.protect()"),
}
# Untimed, before the clock starts: what the function process has loaded when
# the exec wrapper's handler imports the guard (the runtime client and its
# standard-library imports).
_PRELUDE = {"palisade-runtime": "from awslambdaric import bootstrap\n"}
_TIMED = (
    "{prelude}"
    "import time\n"
    "_t0 = time.perf_counter()\n"
    "{imp}\n"
    "_t1 = time.perf_counter()\n"
    "{install}\n"
    "_t2 = time.perf_counter()\n"
    "import json\n"
    "print(json.dumps({{'import_ms': (_t1 - _t0) * 1000, "
    "'install_ms': (_t2 - _t1) * 1000}}))\n"
)


def _env(variant: str, workdir: Path, sample: int) -> dict[str, str]:
    if variant.startswith("palisade"):
        env = {
            "PALISADE_MODE": "monitor",
            "PALISADE_EXTENSION_SOCKET": str(workdir / "absent.sock"),
            "PALISADE_EXTENSION_KEY": str(workdir / "absent.key"),
            "PALISADE_OUTPUT": "file:/dev/null",
        }
        if variant == "palisade-nopyc":
            # An empty bytecode cache: every module is compiled from source, as
            # from a layer that ships no .pyc files.
            env["PYTHONPYCACHEPREFIX"] = str(workdir / f"pycache-{sample}")
        return clean_env(env)
    if variant == "zen":
        return clean_env({"AIKIDO_BLOCK": "true", "AIKIDO_TMP_DIR": str(workdir)})
    return clean_env()


def _sample(variant: str, workdir: Path, sample: int) -> tuple[float, float, float]:
    """(import ms, install ms, whole-process wall ms) of one fresh process."""
    imp, install = _PROGRAMS[variant]
    code = _TIMED.format(prelude=_PRELUDE.get(variant, ""), imp=imp, install=install)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(variant, workdir, sample),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(workdir),
        check=False,
    )
    wall = (time.perf_counter() - began) * 1000
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        err = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise BenchError(
            f"`python -c '{imp}; {install}'` failed (status {done.returncode}): "
            f"{(err[-1] if err else 'no output')[:300]}"
        )
    got = json.loads(lines[-1])
    return float(got["import_ms"]), float(got["install_ms"]), wall


def _collect(plan: Plan, variants: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Interleaved fresh-process samples per variant; more when the spread is wide."""
    data: dict[str, dict[str, list[float]]] = {
        v: {"import": [], "install": [], "total": [], "wall": []} for v in variants
    }
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="palisade-bench-cold-") as tmp:
        workdir = Path(tmp)
        target = plan.cold_processes
        i = 0
        while i < target:
            shift = i % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                if variant in failures:
                    continue
                try:
                    imp, install, wall_ms = _sample(variant, workdir, i)
                except BenchError as exc:
                    failures[variant] = str(exc)
                    continue
                data[variant]["import"].append(imp)
                data[variant]["install"].append(install)
                data[variant]["total"].append(imp + install)
                data[variant]["wall"].append(wall_ms)
            i += 1
            noisy = any(
                len(d["total"]) >= 3 and stats.spread(d["total"]) > NOISE_LIMIT
                for v, d in data.items()
                if v != "none"
            )
            again = i == target == plan.cold_processes and noisy and not plan.quick
            if again and plan.may_repeat(60):
                target += plan.cold_processes
    return data, failures


_NAMES = {
    "palisade": "import palisade + palisade.install(), in the function process",
    "palisade-runtime": "same, after the runtime client's own imports (as on Lambda)",
    "palisade-nopyc": "same, with no bytecode cache (every module compiled)",
    "zen": "import aikido_zen + aikido_zen.protect() (peer), in the function process",
}


def _summary_figure(fid: str, name: str, values: list[float], **kw: Any) -> Figure:
    s = stats.summary(values)
    return Figure(
        id=fid,
        section=SECTION,
        name=name,
        value=s["median"],
        unit="ms",
        median=s["median"],
        p99=s["p99"],
        n=s["n"],
        spread=s["spread"],
        **kw,
    )


def measure(plan: Plan) -> dict[str, Any]:
    """Cold-start figures: guard import+install, process wall time, sandbox init."""
    variants = ["none", "palisade", "palisade-runtime", "palisade-nopyc"]
    if plan.peer_available:
        variants.append("zen")
    data, failures = _collect(plan, variants)

    figures: list[Figure] = []
    for variant in variants[1:]:
        fid = f"coldstart.import_install.{variant}"
        budget = "import_install_ms" if variant == "palisade" else None
        d = data[variant]
        if not d["total"]:
            reason = failures.get(variant, "no samples")
            figures.append(
                not_measured(fid, SECTION, _NAMES[variant], "ms", reason, budget)
            )
            continue
        imp, inst = stats.median(d["import"]), stats.median(d["install"])
        figures.append(
            judged(
                _summary_figure(
                    fid,
                    _NAMES[variant],
                    d["total"],
                    context=f"import {imp:.1f} ms + install {inst:.1f} ms (medians); "
                    + (
                        "the runtime client imported first, untimed"
                        if variant in _PRELUDE
                        else "fresh interpreter, nothing imported before"
                    ),
                ),
                budget,
            )
        )
    if data["none"]["wall"]:
        base = stats.median(data["none"]["wall"])
        figures.append(
            _summary_figure(
                "coldstart.process.none",
                "interpreter start to exit, no guard (`python -c pass`)",
                data["none"]["wall"],
            )
        )
        for variant in variants[1:]:
            # The runtime variant's wall time includes its untimed prelude, so
            # against `python -c pass` it would say nothing about the guard.
            if data[variant]["wall"] and variant not in _PRELUDE:
                figures.append(
                    _summary_figure(
                        f"coldstart.process.{variant}",
                        f"interpreter start to exit, {variant} imported and installed",
                        data[variant]["wall"],
                        ratio=stats.ratio(stats.median(data[variant]["wall"]), base),
                        baseline=base,
                    )
                )

    samples_ms = {f"{v}: import+install": data[v]["total"] for v in variants[1:]}
    samples_ms.update({f"{v}: process wall": data[v]["wall"] for v in variants})
    raw: dict[str, Any] = {"failures": failures, "processes": data}
    sandbox_figures, sandbox_raw = sandboxes.init_figures(plan)
    figures += sandbox_figures
    raw.update(sandbox_raw)
    samples_ms.update(sandbox_raw.get("samples_ms", {}))
    raw["samples_ms"] = samples_ms
    return {"figures": figures, "raw": raw}
