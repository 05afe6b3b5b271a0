"""Run a benchmark child process and read the one JSON object it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import BenchError

HERE = Path(__file__).resolve().parent


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without PALISADE_*/AIKIDO_* settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PALISADE_", "AIKIDO_", "AWS_LAMBDA_", "_HANDLER"))
    }
    env.update(extra or {})
    return env


def run_json(
    script: str,
    args: list[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run ``python HERE/script args...`` and parse the last line of its stdout.

    Raises:
        BenchError: when the child fails, times out or prints no JSON object.
    """
    command = [sys.executable, str(HERE / script), *args]
    try:
        done = subprocess.run(
            command,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(cwd) if cwd else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"{script} did not finish within {timeout:.0f} s; expected a JSON line "
            "on stdout. Run it by hand with the same arguments to see where it hangs."
        ) from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = [
            line.strip()
            for line in (done.stderr or done.stdout).splitlines()
            if line.strip()
        ]
        last = tail[-1] if tail else "(no output)"
        raise BenchError(
            f"the {script} child failed (status {done.returncode}): {last[:300]}"
        )
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BenchError(
            f"{script} printed {lines[-1][:120]!r}; expected one JSON object"
        ) from exc
    return result
