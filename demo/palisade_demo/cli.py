"""``palisade demo``: run the end-to-end demo and print its report."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from . import netns

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "out"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="palisade demo",
        description=(
            "Learn three sample functions, propose their policies, replay attacks in "
            "alert and block mode, and report what Palisade saw and stopped."
        ),
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--quick", action="store_true", help="fewer benign events (every attack)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the event streams")
    parser.add_argument(
        "--attack",
        action="append",
        default=None,
        help="run only this attack (repeatable)",
    )
    parser.add_argument(
        "--no-namespace",
        action="store_true",
        help="do not create a network namespace (loopback-only subset)",
    )
    parser.add_argument(netns.INSIDE_FLAG, action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when every check of the report passed, 1 otherwise."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    out: Path = args.out.resolve()

    network: netns.Network | None = None
    if not args.inside_namespace and not args.no_namespace:
        works, reason = netns.can_unshare()
        if works:
            cmd = netns.unshare_command(
                [a for a in args_list if a != netns.INSIDE_FLAG]
            )
            assert cmd is not None
            return subprocess.run(cmd, check=False).returncode
        print(
            f"palisade demo: cannot create a network namespace: {reason}.\n"
            "Running only what stays on 127.0.0.0/8; the metadata, DNS and "
            "outside-name attacks are skipped.",
            file=sys.stderr,
        )
        network = netns.loopback_only(reason)
    elif args.no_namespace:
        network = netns.loopback_only("--no-namespace was given")

    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    logging.basicConfig(
        filename=str(out / "logs" / "demo.log"),
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from .progress import Progress
    from .scenario import DemoError, Scenario, Sizes

    progress = Progress()
    if network is None:
        try:
            network = netns.enter(out / "netns")
        except RuntimeError as exc:
            print(f"palisade demo: {exc}", file=sys.stderr)
            return 2
    started = time.monotonic()
    scenario = Scenario(
        out,
        network,
        Sizes.quick() if args.quick else Sizes(),
        progress,
        seed=args.seed,
        only_attacks=args.attack,
    )
    for stale in ("report.txt", "report.json", "report.html"):
        (out / stale).unlink(missing_ok=True)
    try:
        report = scenario.run()
    except DemoError as exc:
        progress.done()
        print(f"palisade demo: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # A component failed under the demo: say where, keep the traceback in the log.
        progress.done()
        logging.getLogger(__name__).exception("demo failed")
        print(
            f"palisade demo: failed while {progress.current or 'starting'}: "
            f"{type(exc).__name__}: {exc}\nsee {out / 'logs'} (demo.log has the "
            "traceback)",
            file=sys.stderr,
        )
        return 2
    finally:
        progress.done()
    report.phase_seconds["total"] = time.monotonic() - started
    text, data, page = report.write(out)
    print(report.text())
    print(f"\nreport: {page}\n        {text}\n        {data}")
    return 0 if report.ok else 1
