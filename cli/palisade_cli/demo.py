"""``palisade demo``: the end-to-end demo (its code lives in the checkout's demo/)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"


def main(argv: list[str]) -> int:
    """Run the demo from the source checkout; see ``demo/palisade_demo/cli.py``."""
    if not (DEMO_DIR / "palisade_demo").is_dir():
        print(
            f"palisade demo: expected the demo's code in {DEMO_DIR}/palisade_demo; "
            "run it from a source checkout (git clone, then make demo)",
            file=sys.stderr,
        )
        return 2
    if str(DEMO_DIR) not in sys.path:
        sys.path.insert(0, str(DEMO_DIR))
    cli = importlib.import_module("palisade_demo.cli")
    result: int = cli.main(argv)
    return result
