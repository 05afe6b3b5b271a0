"""One fresh function-like process for the cold-start, memory and wrapper figures.

Run as a script: ``process_child.py MODE VARIANT WORKDIR [N]``. Prints one JSON
object. Modes:

- ``cold``: time ``import`` + install of the guard (nothing else imported first).
- ``memory``: VmRSS and VmHWM from ``/proc/self/status`` after the guard is
  installed and a small workload (file reads, a loopback connect, a subprocess)
  ran inside ``N`` invocations; a ``-runtime`` variant imports the Lambda
  runtime client first, as the function process has.
- ``wrapper``: time ``N`` calls of a trivial handler through the guard's handler
  wrapper, which also builds and delivers one record per call.

Standard library only, besides the guard under test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_BEGAN = time.perf_counter()


class _LambdaContext:
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id
        self.function_name = "bench"
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:b"
        self.memory_limit_in_mb = 512

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


Handler = Callable[[Any, Any], Any]


def _install(variant: str) -> Callable[[Handler], Handler]:
    """Import and install the guard; return its handler wrapper."""
    variant = variant.removesuffix("-runtime")
    if variant == "none":
        return lambda handler: handler
    if variant.startswith("palisade"):
        import palisade

        palisade.install()
        return palisade.protect
    if variant == "zen":
        import zen_setup

        zen_setup.protect()

        def wrap(handler: Handler) -> Handler:
            def zen_handler(event: Any, context: Any) -> Any:
                zen_setup.set_context(event)
                return handler(event, context)

            return zen_handler

        return wrap
    raise SystemExit(f"unknown variant {variant!r}: expected none, palisade*, zen")


def _status() -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def cold(variant: str) -> dict[str, Any]:
    began = time.perf_counter()
    _install(variant)
    install_ms = (time.perf_counter() - began) * 1000
    return {"install_ms": install_ms, "startup_ms": (began - _BEGAN) * 1000}


def memory(variant: str, workdir: Path, n: int) -> dict[str, Any]:
    if variant.endswith("-runtime"):
        # What the function process holds before the guard: the runtime client.
        from awslambdaric import bootstrap

        del bootstrap
    small = workdir / "small.txt"
    small.write_bytes(b"x" * 100)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    before = _status()
    wrap = _install(variant)

    def handler(event: Any, context: Any) -> int:
        total = 0
        for _ in range(20):
            with open(small, "rb") as handle:
                total += len(handle.read())
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()
        client.close()
        subprocess.run(["true"], check=True)
        return total

    protected = wrap(handler)
    for i in range(n):
        protected({"q": "benign input"}, _LambdaContext(f"mem-{i}"))
    after = _status()
    listener.close()
    return {"before_kb": before, "after_kb": after}


def wrapper(variant: str, n: int) -> dict[str, Any]:
    wrap = _install(variant)

    def handler(event: Any, context: Any) -> Any:
        return event

    protected = wrap(handler)
    contexts = [_LambdaContext(f"req-{i}") for i in range(n)]
    event = {"q": "benign input"}
    for ctx in contexts[: max(1, n // 10)]:
        protected(event, ctx)
    samples = []
    batch = 50
    for start in range(0, n, batch):
        chunk = contexts[start : start + batch]
        began = time.perf_counter_ns()
        for ctx in chunk:
            protected(event, ctx)
        samples.append((time.perf_counter_ns() - began) / len(chunk) / 1000)
    return {"per_call_us": samples}


def main() -> int:
    mode, variant, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    workdir.mkdir(parents=True, exist_ok=True)
    if mode == "cold":
        result = cold(variant)
    elif mode == "memory":
        result = memory(variant, workdir, n)
    elif mode == "wrapper":
        result = wrapper(variant, n)
    else:
        raise SystemExit(f"unknown mode {mode!r}: expected cold, memory or wrapper")
    print(json.dumps({"mode": mode, "variant": variant, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
