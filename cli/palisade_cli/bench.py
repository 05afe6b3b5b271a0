"""``palisade bench``: run the benchmarks and write docs/benchmarks.md.

The harness lives in ``bench/palisade_bench`` of the source tree (it is not part
of the installed packages); this command puts that folder on ``sys.path``.
Its extra dependencies (matplotlib for the charts, aikido-zen as the peer) come
from the ``bench`` extra, installed into the running interpreter when missing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "bench"
EXTRA_MODULES = ("matplotlib", "aikido_zen")


def _missing_extras() -> list[str]:
    missing = []
    for module in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def _ensure_extras() -> None:
    """Install the ``bench`` extra into this interpreter when an import fails."""
    missing = _missing_extras()
    if not missing:
        return
    print(
        f"palisade bench: {', '.join(missing)} missing; installing the 'bench' extra",
        file=sys.stderr,
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{REPO}[bench]"],
        check=True,
        cwd=str(REPO),
    )
    importlib.invalidate_caches()
    still = _missing_extras()
    if still:
        raise SystemExit(
            f"palisade bench: {', '.join(still)} still not importable after "
            f"installing the 'bench' extra into {sys.executable}; install it by hand: "
            f"{sys.executable} -m pip install -e '{REPO}[bench]'"
        )


def _parser(sections: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="palisade bench",
        description="Measure what Palisade costs a function and write "
        "docs/benchmarks.md, its charts and a results JSON under bench/results/.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny repetition counts (a fast check)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="smaller still than --quick, one handler: only checks the harness runs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write results/, benchmarks.md and benchmarks/*.png here instead of "
        "bench/results and docs/",
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run, of: {', '.join(sections)}",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not install the 'bench' extra when it is missing (figures that "
        "need it are then reported as not measured)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return 0 when every section ran (figures may miss)."""
    if not (BENCH_DIR / "palisade_bench").is_dir():
        print(
            f"palisade bench: expected the harness in {BENCH_DIR / 'palisade_bench'}, "
            "found nothing; run this from a source checkout of Palisade",
            file=sys.stderr,
        )
        return 2
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import palisade_bench

    args = _parser(palisade_bench.SECTIONS).parse_args(
        list(sys.argv[1:] if argv is None else argv)
    )
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # moto's HTTP server logs every request at INFO; that is not progress.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if args.smoke:
        plan: Any = palisade_bench.Plan.smoke_plan()
    elif args.quick:
        plan = palisade_bench.Plan.quick_plan()
    else:
        plan = palisade_bench.Plan()
    if args.only:
        wanted = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in wanted if s not in palisade_bench.SECTIONS]
        if unknown:
            print(
                f"palisade bench: unknown section(s) {', '.join(unknown)}; expected "
                f"some of {', '.join(palisade_bench.SECTIONS)}",
                file=sys.stderr,
            )
            return 2
        plan.sections = wanted
    plan.out = args.out

    if not args.no_install:
        _ensure_extras()
    plan.peer_available = "aikido_zen" not in _missing_extras()
    results = palisade_bench.run(plan)

    print(f"results: {results['results_file']}")
    print(f"page:    {plan.docs_path}")
    missing = [
        f
        for section in results["sections"].values()
        for f in section["figures"]
        if f["status"] != "measured"
    ]
    missed = [
        f
        for section in results["sections"].values()
        for f in section["figures"]
        if f.get("passed") is False
    ]
    print(f"{len(missing)} figure(s) not measured, {len(missed)} budget(s) missed")
    return 0
