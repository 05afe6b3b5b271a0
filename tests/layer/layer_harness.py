"""Harness for the layer tests: run guarded code in a fresh interpreter.

Audit hooks cannot be removed, so nothing here installs Palisade in the pytest
process: each scenario runs as a script in a child interpreter with
PALISADE_OUTPUT=file:..., and the test reads the JSON lines it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYER = Path(__file__).resolve().parents[2] / "layer"

PROLOGUE = """\
import json, os, socket, subprocess, sys
import palisade
"""

EPILOGUE = """
protected = palisade.protect(handler)
try:
    result = protected(EVENT, None)
    print("RESULT " + json.dumps(result))
except PermissionError as exc:
    print("PERMISSION " + str(exc))
"""


@dataclass
class Run:
    """What a child interpreter did: exit status, output, and Palisade's lines."""

    returncode: int
    stdout: str
    stderr: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [
            line for line in self.lines if line.get("schema") == "palisade.record/1"
        ]

    @property
    def invocations(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["request_id"] != "init"]

    @property
    def init(self) -> dict[str, Any]:
        found = [r for r in self.records if r["request_id"] == "init"]
        assert len(found) == 1, self.describe()
        return found[0]

    @property
    def blocked_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("palisade") == "blocked"]

    def events(
        self, kind: str | None = None, op: str | None = None
    ) -> list[dict[str, Any]]:
        found = []
        for record in self.invocations:
            for event in record["events"]:
                if (kind is None or event["kind"] == kind) and (
                    op is None or event["op"] == op
                ):
                    found.append(event)
        return found

    def one(self, kind: str, op: str, target: str | None = None) -> dict[str, Any]:
        found = [
            e for e in self.events(kind, op) if target is None or e["target"] == target
        ]
        assert len(found) == 1, (
            f"expected one {kind}:{op} {target}, got {found}\n{self.describe()}"
        )
        return found[0]

    def describe(self) -> str:
        summary = [
            " ".join(
                (
                    f"{e['kind']}:{e['op']}",
                    e["target"],
                    e["module"],
                    e["verdict"],
                    e["rule"],
                )
            )
            for r in self.records
            for e in r["events"]
        ]
        return (
            f"rc={self.returncode}\nstdout={self.stdout}\nstderr={self.stderr[-3000:]}\n"
            + "\n".join(summary)
        )


def child_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A clean environment for a child: no PALISADE_* leaks, output to a file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_")}
    env["PYTHONPATH"] = str(LAYER)
    env["PALISADE_OUTPUT"] = f"file:{tmp_path / 'palisade.jsonl'}"
    env["PALISADE_EXTENSION_KEY"] = str(tmp_path / "no-such.key")
    env["PALISADE_EXTENSION_SOCKET"] = str(tmp_path / "no-such.sock")
    env.update(settings)
    return env


def run_script(
    tmp_path: Path,
    script: str,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    cwd: Path | None = None,
    **settings: str,
) -> Run:
    """Run ``script`` in a fresh interpreter and collect Palisade's output lines."""
    path = tmp_path / "scenario.py"
    path.write_text(script)
    environment = env if env is not None else child_env(tmp_path, **settings)
    done = subprocess.run(
        [sys.executable, str(path), *(args or [])],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=str(cwd or tmp_path),
    )
    out = tmp_path / "palisade.jsonl"
    lines = []
    if out.exists():
        lines = [json.loads(line) for line in out.read_text().splitlines() if line]
    return Run(done.returncode, done.stdout, done.stderr, lines)


def handler_script(body: str, setup: str = "", event: Any = None) -> str:
    """A script defining ``handler(event, context)`` with ``body``, then calling it
    once through ``palisade.protect``; a PermissionError is printed, not raised."""
    return (
        PROLOGUE
        + textwrap.dedent(setup)
        + "\ndef handler(event, context):\n"
        + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")
        + f"\nEVENT = {event!r}\n"
        + EPILOGUE
    )


def run_handler(
    tmp_path: Path, body: str, setup: str = "", event: Any = None, **settings: str
) -> Run:
    """Run a handler body once under Palisade with the given PALISADE_* settings."""
    return run_script(tmp_path, handler_script(body, setup, event), **settings)


EXPECTED = {"monitor": "allowed", "alert": "alerted", "block": "blocked"}
