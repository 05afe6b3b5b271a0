"""Local-sandbox variants: /opt with or without the extension, and init figures.

Two /opt folders are built once per run from this checkout with
``palisade_sandbox.layout.build_source_opt`` (symlinks to the source, as
``opt_dir="source"`` does): one complete (layer, exec wrapper, extension) and
one without ``extensions/``, so the extension's own cost can be measured against
the same layer without it. The function is redirected through the exec wrapper
(``AWS_LAMBDA_EXEC_WRAPPER=<opt>/palisade-exec-wrapper``), as on Lambda.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import stats
from .errors import BenchError
from .figures import Figure, judged, not_measured
from .settings import REPO, Plan

SECTION = "coldstart"
TRIVIAL_APP = "def handler(event, context):\n    return {'ok': True}\n"


@dataclass
class OptDirs:
    """The two /opt folders: ``full`` (with the extension) and ``no_extension``."""

    full: Path
    no_extension: Path

    def for_variant(self, extension: bool) -> Path:
        """The /opt for a Palisade variant with or without the extension."""
        return self.full if extension else self.no_extension


def require_sandbox() -> Any:
    """Import palisade_sandbox, or explain why the sandbox figures cannot be taken.

    Raises:
        BenchError: the package or its Sandbox class is not there yet.
    """
    try:
        import palisade_sandbox
        from palisade_sandbox.layout import build_source_opt
    except ImportError as exc:
        raise BenchError(
            f"the local sandbox (palisade_sandbox) cannot be imported: {exc}"
        ) from exc
    if not hasattr(palisade_sandbox, "Sandbox"):
        raise BenchError("palisade_sandbox has no Sandbox class")
    del build_source_opt
    return palisade_sandbox


@contextlib.contextmanager
def opt_dirs() -> Iterator[OptDirs]:
    """Build both /opt folders in a temporary directory (removed afterwards).

    Raises:
        BenchError: the checkout lacks the exec wrapper or the extension launcher.
    """
    require_sandbox()
    from palisade_sandbox.layout import build_source_opt

    for needed in ("layer/palisade/exec-wrapper", "extension/launcher"):
        if not (REPO / needed).exists():
            raise BenchError(f"{needed} is missing from the checkout")
    with tempfile.TemporaryDirectory(prefix="palisade-bench-opt-") as tmp:
        full = build_source_opt(Path(tmp) / "full")
        bare = build_source_opt(Path(tmp) / "no-extension")
        shutil.rmtree(bare / "extensions")
        yield OptDirs(full=full, no_extension=bare)


def palisade_env(
    opt: Path,
    mode: str,
    sink: Path,
    policy: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The function environment of a Palisade variant (exec wrapper, mode, sink)."""
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": str(opt / "palisade-exec-wrapper"),
        "PALISADE_MODE": mode,
        # Batches go to a file: the analyzer is not on the invocation's path.
        "PALISADE_SINK": f"file:{sink}",
    }
    if policy is not None:
        env["PALISADE_POLICY"] = json.dumps(policy)
    return env


def rss_kb(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) of ``pid`` in kB, from /proc; None when unreadable."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None, None
    return values.get("VmRSS"), values.get("VmHWM")


def _watch_first_next(
    box: Any, began: float, out: dict[str, float]
) -> threading.Thread:
    """Record when each extension first waits in /next (platform's own state)."""
    platform = box.platform
    deadline = began + 15.0

    def watch() -> None:
        with platform.cond:
            while time.monotonic() < deadline and not platform.closing:
                for ext in platform.extensions.values():
                    if ext.external and ext.state != "registered":
                        out.setdefault(ext.name, time.monotonic() - began)
                if out:
                    return
                platform.cond.wait(0.02)

    thread = threading.Thread(target=watch, name="bench-first-next", daemon=True)
    thread.start()
    return thread


def _init_once(
    sandbox_mod: Any, variant: str, opts: OptDirs, work: Path
) -> dict[str, Any]:
    code = work / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(TRIVIAL_APP)
    env: dict[str, str] = {}
    opt: Path | None = None
    if variant != "unprotected":
        opt = opts.for_variant(extension=variant == "palisade")
        env = palisade_env(opt, "monitor", work / "batches.jsonl")
    box = sandbox_mod.Sandbox(
        "app.handler", code_dir=code, opt_dir=opt, env=env, moto=False, timeout=10
    )
    first_next: dict[str, float] = {}
    try:
        box.start()
        began = time.monotonic()
        watcher = (
            _watch_first_next(box, began, first_next) if variant == "palisade" else None
        )
        error = box.init()
        init_ms = (time.monotonic() - began) * 1000
        if error is not None:
            raise BenchError(f"sandbox init failed for {variant}: {error}")
        if watcher is not None:
            watcher.join(timeout=2)
        ext_rss = [rss_kb(pid) for pid in box.extension_pids.values()]
        result = box.invoke({"warm": True})
        if not result.ok:
            raise BenchError(
                f"the first invoke of the trivial handler failed for {variant}: "
                f"{result.status} {result.error}"
            )
    finally:
        box.shutdown()
    return {
        "init_ms": init_ms,
        "extension_first_next_ms": min(first_next.values()) * 1000
        if first_next
        else None,
        "extension_rss_kb": [r for r, _ in ext_rss if r is not None],
    }


def init_figures(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    """Sandbox init with and without the extension, and extension init to /next."""
    variants = ["unprotected", "palisade-noext", "palisade"]
    names = {
        "unprotected": "sandbox init, no layer (runtime start to first /next)",
        "palisade-noext": "sandbox init, Palisade layer without the extension",
        "palisade": "sandbox init, Palisade layer with the extension",
    }
    ext_name = "extension init to its first /next"
    try:
        sandbox_mod = require_sandbox()
        samples: dict[str, list[float]] = {v: [] for v in variants}
        first_next: list[float] = []
        ext_rss: list[float] = []
        with (
            opt_dirs() as opts,
            tempfile.TemporaryDirectory(prefix="palisade-bench-init-") as tmp,
        ):
            count = max(2, plan.cold_processes // 3)
            for i in range(count):
                shift = i % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    got = _init_once(
                        sandbox_mod, variant, opts, Path(tmp) / f"{variant}-{i}"
                    )
                    samples[variant].append(got["init_ms"])
                    if got["extension_first_next_ms"] is not None:
                        first_next.append(got["extension_first_next_ms"])
                    ext_rss += [kb / 1024 for kb in got["extension_rss_kb"]]
    except BenchError as exc:
        figures = [
            not_measured(
                f"coldstart.sandbox_init.{v}", SECTION, names[v], "ms", str(exc)
            )
            for v in variants
        ]
        figures.append(
            not_measured(
                "coldstart.extension_init",
                SECTION,
                ext_name,
                "ms",
                str(exc),
                "extension_init_ms",
            )
        )
        return figures, {}

    figures = []
    base = stats.median(samples["unprotected"])
    for variant in variants:
        s = stats.summary(samples[variant])
        figures.append(
            Figure(
                id=f"coldstart.sandbox_init.{variant}",
                section=SECTION,
                name=names[variant],
                value=s["median"],
                unit="ms",
                median=s["median"],
                p99=s["p99"],
                n=s["n"],
                spread=s["spread"],
                ratio=stats.ratio(s["median"], base),
                baseline=base,
                context="trivial handler; includes starting python and awslambdaric",
            )
        )
    if first_next:
        s = stats.summary(first_next)
        figures.append(
            judged(
                Figure(
                    id="coldstart.extension_init",
                    section=SECTION,
                    name=ext_name,
                    value=s["median"],
                    unit="ms",
                    median=s["median"],
                    p99=s["p99"],
                    n=s["n"],
                    spread=s["spread"],
                    context="from the start of init (extensions are started first) "
                    "to the extension's first wait in /next, as the sandbox's "
                    "Extensions API saw it",
                ),
                "extension_init_ms",
            )
        )
    else:
        figures.append(
            not_measured(
                "coldstart.extension_init",
                SECTION,
                ext_name,
                "ms",
                "the extension never reached /next during init",
                "extension_init_ms",
            )
        )
    raw = {
        "sandbox_init_ms": samples,
        "extension_first_next_ms": first_next,
        "extension_rss_after_init_mb": ext_rss,
        "samples_ms": {f"sandbox init: {v}": samples[v] for v in variants}
        | {"extension init to first /next": first_next},
    }
    return figures, raw
