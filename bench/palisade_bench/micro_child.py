"""One fresh process of the per-event and per-operation benchmark.

Run as a script by :mod:`palisade_bench.micro` (audit hooks cannot be removed, so
every variant gets its own interpreter). It installs one guard, times each
operation in a tight loop for a number of repetitions, checks that the guard was
really active, and prints one JSON object on stdout:
``{"per_op_ns": {op: [ns per iteration, ...]}, "install_ms": ..., "active": ...}``.

Standard library only, so that nothing but the guard under test is imported.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class _LambdaContext:
    """The attributes of a Lambda context object that a handler wrapper reads."""

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id
        self.function_name = "bench"
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:b"
        self.memory_limit_in_mb = 512
        self.log_group_name = "/aws/lambda/bench"
        self.log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def _ops(workdir: Path) -> tuple[dict[str, Callable[[int], None]], Callable[[], None]]:
    """The timed operations, each a loop of ``n`` iterations, and their cleanup."""
    small = workdir / "small.txt"
    small.write_bytes(b"x" * 100)
    path = str(small)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    audit = sys.audit
    obj = object()

    def id_loop(n: int) -> None:
        for _ in range(n):
            id(obj)

    def audit_loop(n: int) -> None:
        for _ in range(n):
            audit("bench.ev")

    def open_read(n: int) -> None:
        for _ in range(n):
            with open(path, "rb") as handle:
                handle.read()

    def connect(n: int) -> None:
        for _ in range(n):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.connect(("127.0.0.1", port))
            conn, _ = listener.accept()
            conn.close()
            client.close()

    def connect_by_name(n: int) -> None:
        for _ in range(n):
            client = socket.create_connection(("localhost", port))
            conn, _ = listener.accept()
            conn.close()
            client.close()

    def spawn(n: int) -> None:
        for _ in range(n):
            subprocess.run(["true"], check=True)

    ops: dict[str, Callable[[int], None]] = {
        "id": id_loop,
        "audit": audit_loop,
        "open_read": open_read,
        "connect": connect,
        "connect_by_name": connect_by_name,
        "subprocess": spawn,
    }
    return ops, listener.close


def _install(variant: str) -> tuple[Callable[[Callable[[], Any]], Any], Any]:
    """Install the guard of ``variant``; return a runner of one invocation.

    The runner calls a function the way the variant's handler wrapper would, so
    Palisade's events land in a real invocation record.
    """
    if variant == "none":
        return (lambda fn: fn()), None
    if variant == "floor":
        # The least a Python audit hook can cost: called, returns at once.
        def hook(event: str, args: tuple[Any, ...]) -> None:
            return None

        sys.addaudithook(hook)
        return (lambda fn: fn()), None
    if variant.startswith("palisade"):
        import palisade

        palisade.install()
        counter = iter(range(1_000_000))

        def run_palisade(fn: Callable[[], Any]) -> Any:
            wrapped = palisade.protect(lambda event, context: fn())
            return wrapped({}, _LambdaContext(f"bench-{next(counter)}"))

        return run_palisade, palisade
    if variant == "zen":
        import zen_setup

        zen_setup.protect()

        def run_zen(fn: Callable[[], Any]) -> Any:
            zen_setup.set_context({"q": "benign input"})
            return fn()

        return run_zen, None
    raise SystemExit(
        f"unknown variant {variant!r}: expected none, floor, palisade*, zen"
    )


def _check_active(variant: str, run: Callable[[Callable[[], Any]], Any]) -> bool:
    """Prove the guard was on: its block (or its record of an event) happened."""
    if variant == "none":
        return True
    if variant == "floor":
        return True
    if variant == "zen":
        import zen_setup

        payload = "x; true"
        zen_setup.set_context({"q": payload})
        try:
            subprocess.run(f"echo {payload}", shell=True, capture_output=True)
        except Exception as exc:
            return type(exc).__name__ == "AikidoShellInjection"
        return False
    if variant.startswith("palisade-block"):

        def forbidden() -> bool:
            try:
                subprocess.run(["/bin/sh", "-c", "exit 0"], check=False)
            except PermissionError:
                return True
            return False

        return bool(run(forbidden))
    return True


def main() -> int:
    spec = json.loads(sys.argv[1])
    variant: str = spec["variant"]
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)

    # The fixtures (file, listening socket) exist before the guard, as a
    # function's bundled files and the services it calls would.
    ops, cleanup = _ops(workdir)
    started = time.perf_counter()
    run, _state = _install(variant)
    install_ms = (time.perf_counter() - started) * 1000

    per_op: dict[str, list[float]] = {op: [] for op in spec["ops"]}
    iterations: dict[str, int] = spec["iterations"]
    for op in spec["ops"]:

        def warm(op: str = op) -> None:
            ops[op](max(1, iterations[op] // 10))

        run(warm)
    for _ in range(spec["repetitions"]):
        for op in spec["ops"]:
            n = iterations[op]

            def timed(op: str = op, n: int = n) -> int:
                begin = time.perf_counter_ns()
                ops[op](n)
                return time.perf_counter_ns() - begin

            per_op[op].append(run(timed) / n)
    active = _check_active(variant, run)
    cleanup()

    print(
        json.dumps(
            {
                "variant": variant,
                "per_op_ns": per_op,
                "install_ms": install_ms,
                "active": active,
                "pid": os.getpid(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
