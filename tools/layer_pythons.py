"""Run the layer's tests on every Lambda Python runtime this machine has.

Usage: python tools/layer_pythons.py 3.10 3.11 3.12 3.13

The main virtual environment already runs the whole suite on its own interpreter;
this script covers the others. For each version it looks for ``pythonX.Y`` on PATH,
builds ``.venv-X.Y`` with the layer's test dependencies (once), and runs
``tests/layer`` against the source tree. A missing interpreter is reported and
skipped, never a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from palisade_cli.interpreters import find_interpreter

ROOT = Path(__file__).resolve().parent.parent
TEST_DEPS = ["pytest>=8", "wrapt>=1.16", "PyYAML>=6.0", "jsonschema>=4.20"]


def _venv(version: str, exe: str) -> Path:
    venv = ROOT / f".venv-{version}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([exe, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *TEST_DEPS], check=True
        )
        stamp.touch()
    return python


def main(versions: list[str]) -> int:
    current = "{}.{}".format(*sys.version_info[:2])
    failed: list[str] = []
    for version in versions:
        if version == current:
            print(f"layer tests on Python {version}: covered by the main suite")
            continue
        exe = find_interpreter(version)
        if exe is None:
            print(f"layer tests on Python {version}: skipped, interpreter not found")
            continue
        python = _venv(version, exe)
        print(f"layer tests on Python {version}: {exe}", flush=True)
        env_path = f"{ROOT / 'layer'}"
        result = subprocess.run(
            [
                str(python),
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/layer",
            ],
            cwd=ROOT,
            env={**_clean_env(), "PYTHONPATH": env_path},
            check=False,
        )
        if result.returncode not in (0, 5):
            failed.append(version)
    if failed:
        print("layer tests failed on Python " + ", ".join(failed))
        return 1
    return 0


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_")}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
