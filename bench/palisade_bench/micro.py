"""Cost per audit event and per observed operation, in fresh interleaved processes.

Each variant (no guard, a minimal audit hook as the floor, Palisade with and
without attribution, Palisade in block mode, the peer) runs in its own
interpreter because audit hooks cannot be removed. One round starts one process
per variant, in an order rotated every round so that drift in the machine's load
spreads evenly; each process times every operation for several repetitions and
keeps its median. The figure is the median of those process medians, and its
added cost is the difference to the unprotected variant of the same run.

Limitation: the p99 is over repetition averages (each a loop of many
iterations), not over single operations, because timing one 30 ns ``id()`` call
would measure the clock instead.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from . import stats
from .children import clean_env, run_json
from .errors import BenchError
from .figures import NOISE_LIMIT, Figure, judged, not_measured
from .settings import Plan

log = logging.getLogger(__name__)

SECTION = "micro"
OPS = ("id", "audit", "open_read", "connect", "connect_by_name", "subprocess")
UNINTERESTING = ("id", "audit")
OP_LABELS = {
    "id": "id() (uninteresting audit event builtins.id)",
    "audit": "sys.audit('bench.ev') (uninteresting event)",
    "open_read": "open + read of a 100-byte file",
    "connect": "loopback TCP connect to 127.0.0.1 (+accept, close)",
    "connect_by_name": "loopback connect by name: create_connection('localhost')",
    "subprocess": "subprocess.run(['true'])",
}
VARIANT_LABELS = {
    "none": "no protection",
    "floor": "empty Python audit hook (the floor any hook pays)",
    "palisade": "Palisade monitor, attribution on",
    "palisade-noattr": "Palisade monitor, attribution off",
    "palisade-block": "Palisade block, policy allows these operations",
    "zen": "Aikido Zen (peer), blocking on",
}


def _policy(workdir: Path) -> dict[str, Any]:
    """A block-mode policy that allows exactly the operations being timed."""
    return {
        "version": 1,
        "mode": "block",
        "function": "bench",
        "file": {"allow": [{"path": f"{workdir}/**", "access": ["read"]}]},
        "process": {"allow": [{"exec": "true"}]},
        "network": {"allow": [{"cidr": "127.0.0.0/8", "ops": ["connect"]}]},
        "dns": {"allow": [{"name": "localhost"}]},
    }


def _env(variant: str, workdir: Path, max_events: int) -> dict[str, str]:
    base = {
        # No extension here: the records go to a file, the fallback a function
        # without the extension uses; the socket path is one that does not exist.
        "PALISADE_EXTENSION_SOCKET": str(workdir / "absent.sock"),
        "PALISADE_EXTENSION_KEY": str(workdir / "absent.key"),
        "PALISADE_OUTPUT": "file:/dev/null",
        "PALISADE_MAX_EVENTS": str(max_events),
        "PALISADE_FUNCTION_NAME": "bench",
    }
    if variant == "palisade":
        return clean_env({**base, "PALISADE_MODE": "monitor"})
    if variant == "palisade-noattr":
        return clean_env(
            {**base, "PALISADE_MODE": "monitor", "PALISADE_ATTRIBUTION": "off"}
        )
    if variant == "palisade-block":
        return clean_env(
            {
                **base,
                "PALISADE_MODE": "block",
                "PALISADE_POLICY": json.dumps(_policy(workdir)),
            }
        )
    if variant == "zen":
        return clean_env({"AIKIDO_BLOCK": "true", "AIKIDO_TMP_DIR": str(workdir)})
    return clean_env()


def _round(
    variants: list[str], order_shift: int, spec: dict[str, Any], workdir: Path
) -> dict[str, dict[str, Any] | str]:
    """One process per variant, in a rotated order; a string where one failed."""
    out: dict[str, dict[str, Any] | str] = {}
    shift = order_shift % len(variants)
    for variant in variants[shift:] + variants[:shift]:
        vdir = workdir / variant
        child_spec = {**spec, "variant": variant, "workdir": str(vdir)}
        try:
            result = run_json(
                "micro_child.py",
                [json.dumps(child_spec)],
                _env(variant, vdir, spec["max_events"]),
                timeout=spec["timeout"],
            )
        except BenchError as exc:
            out[variant] = str(exc)
            continue
        if not result.get("active"):
            out[variant] = (
                f"the {variant} guard did not show it was active (its block or "
                "detection check did not fire), so its timings would be meaningless"
            )
            continue
        out[variant] = result
    return out


def measure(plan: Plan) -> dict[str, Any]:
    """Run the per-event benchmark; return figures and raw samples."""
    variants = ["none", "floor", "palisade", "palisade-noattr", "palisade-block"]
    if plan.peer_available:
        variants.append("zen")
    iterations = plan.micro_iterations
    spec = {
        "ops": list(OPS),
        "iterations": iterations,
        "repetitions": plan.micro_repetitions,
        "max_events": 4 * max(iterations.values()) + 10_000,
        "timeout": 120,
    }

    # medians[variant][op] = list of per-process medians (ns per iteration)
    medians: dict[str, dict[str, list[float]]] = {
        v: {op: [] for op in OPS} for v in variants
    }
    samples: dict[str, dict[str, list[float]]] = {
        v: {op: [] for op in OPS} for v in variants
    }
    failures: dict[str, str] = {}
    failed: dict[str, int] = {}
    rounds = 0
    with tempfile.TemporaryDirectory(prefix="palisade-bench-micro-") as tmp:
        workdir = Path(tmp)
        target_rounds = plan.micro_processes
        began = time.monotonic()
        while rounds < target_rounds:
            got = _round(variants, rounds, spec, workdir)
            rounds += 1
            for variant, result in got.items():
                if isinstance(result, str):
                    failures[variant] = result
                    failed[variant] = failed.get(variant, 0) + 1
                    continue
                for op, values in result["per_op_ns"].items():
                    medians[variant][op].append(stats.median(values))
                    samples[variant][op].extend(values)
            more = rounds == target_rounds < plan.micro_max_processes
            round_cost = (time.monotonic() - began) / rounds
            if (
                more
                and not plan.quick
                and _noisy(medians)
                and plan.may_repeat(3 * round_cost + 300)
            ):
                log.info("micro: spread above %.0f%%, more rounds", NOISE_LIMIT * 100)
                target_rounds = min(
                    plan.micro_max_processes,
                    target_rounds + max(1, plan.micro_processes // 2),
                )

    for variant, count in failed.items():
        failures[variant] = f"{count} of {rounds} processes failed: {failures[variant]}"
    figures = _figures(variants, medians, samples, failures, rounds, plan)
    return {
        "figures": figures,
        "raw": {
            "variants": variants,
            "labels": VARIANT_LABELS,
            "op_labels": OP_LABELS,
            "process_medians_ns": medians,
            "iterations": iterations,
            "repetitions": plan.micro_repetitions,
            "processes": rounds,
            "failures": failures,
        },
    }


def _noisy(medians: dict[str, dict[str, list[float]]]) -> bool:
    return any(
        len(values) >= 3 and stats.spread(values) > NOISE_LIMIT
        for per_op in medians.values()
        for values in per_op.values()
    )


def _figures(
    variants: list[str],
    medians: dict[str, dict[str, list[float]]],
    samples: dict[str, dict[str, list[float]]],
    failures: dict[str, str],
    rounds: int,
    plan: Plan,
) -> list[Figure]:
    figures: list[Figure] = []
    base = medians["none"]
    for op in OPS:
        if not base[op]:
            figures.append(
                not_measured(
                    f"micro.{op}.none",
                    SECTION,
                    OP_LABELS[op],
                    "ns",
                    failures.get("none", "the unprotected run failed"),
                )
            )
            continue
        baseline = stats.median(base[op])
        figures.append(
            Figure(
                id=f"micro.{op}.none",
                section=SECTION,
                name=f"{OP_LABELS[op]}: {VARIANT_LABELS['none']}",
                value=baseline,
                unit="ns",
                median=baseline,
                p99=stats.quantile(samples["none"][op], 0.99),
                n=len(samples["none"][op]),
                spread=stats.spread(base[op]),
                context=f"{rounds} processes x {plan.micro_repetitions} repetitions "
                f"x {plan.micro_iterations[op]} iterations; absolute time per op",
            )
        )
        for variant in variants[1:]:
            fid = f"micro.{op}.{variant}"
            label = f"{OP_LABELS[op]}: {VARIANT_LABELS[variant]}, added per op"
            budget = None
            if variant in ("palisade", "palisade-block"):
                budget = "audit_event_ns" if op in UNINTERESTING else "observed_op_ns"
            if not medians[variant][op]:
                reason = failures.get(variant, "no samples")
                figures.append(not_measured(fid, SECTION, label, "ns", reason, budget))
                continue
            value = stats.median(medians[variant][op])
            added = value - baseline
            figures.append(
                judged(
                    Figure(
                        id=fid,
                        section=SECTION,
                        name=label,
                        value=added,
                        unit="ns",
                        median=value,
                        p99=stats.quantile(samples[variant][op], 0.99),
                        n=len(samples[variant][op]),
                        spread=stats.spread(medians[variant][op]),
                        ratio=stats.ratio(value, baseline),
                        baseline=baseline,
                        context=f"{value:.0f} ns vs {baseline:.0f} ns unprotected"
                        + (f"; {failures[variant]}" if variant in failures else ""),
                    ),
                    budget,
                )
            )
    figures += _attribution(medians)
    figures += _over_floor(medians)
    return figures


def _over_floor(medians: dict[str, dict[str, list[float]]]) -> list[Figure]:
    """Palisade's own share of an uninteresting event: its hook minus an empty one.

    The empty hook's cost is what the interpreter charges for calling any Python
    audit hook; no Python guard can go below it.
    """
    out: list[Figure] = []
    mine, floor = medians.get("palisade"), medians.get("floor")
    if not mine or not floor:
        return out
    for op in UNINTERESTING:
        if not mine[op] or not floor[op]:
            continue
        a, b = stats.median(mine[op]), stats.median(floor[op])
        out.append(
            Figure(
                id=f"micro.{op}.over_floor",
                section=SECTION,
                name=f"{OP_LABELS[op]}: Palisade's hook beyond an empty hook",
                value=a - b,
                unit="ns",
                n=min(len(mine[op]), len(floor[op])),
                ratio=stats.ratio(a, b),
                baseline=b,
                context="what the set lookup and return cost above the interpreter's "
                "own price for calling a Python audit hook",
            )
        )
    return out


def _attribution(medians: dict[str, dict[str, list[float]]]) -> list[Figure]:
    """What attribution itself costs per operation: attribution on minus off."""
    out: list[Figure] = []
    on, off = medians.get("palisade"), medians.get("palisade-noattr")
    if not on or not off:
        return out
    for op in OPS:
        if op in UNINTERESTING or not on[op] or not off[op]:
            continue
        a, b = stats.median(on[op]), stats.median(off[op])
        out.append(
            Figure(
                id=f"micro.{op}.attribution",
                section=SECTION,
                name=f"{OP_LABELS[op]}: attribution's share (on minus off)",
                value=a - b,
                unit="ns",
                n=min(len(on[op]), len(off[op])),
                ratio=stats.ratio(a, b),
                baseline=b,
                context="PALISADE_ATTRIBUTION=on vs off, both Palisade monitor",
            )
        )
    return out
