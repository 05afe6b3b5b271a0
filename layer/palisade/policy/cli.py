"""``palisade policy validate [--json] FILE...``: check policy files."""

from __future__ import annotations

import argparse
import json
import sys

from palisade.errors import PolicyError
from palisade.policy.loader import load_policy_document, policy_id


def validate_main(argv: list[str]) -> int:
    """Validate each FILE; print the verdict, or with --json the JSON document.

    Returns 0 when every file is valid, 1 when any is not, 2 on a usage error.
    """
    parser = argparse.ArgumentParser(
        prog="palisade policy validate",
        description="Check policy files (JSON or YAML) against the policy schema.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each valid document as normalised JSON instead of a summary",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    status = 0
    for name in args.files:
        try:
            document = load_policy_document(name if name != "-" else sys.stdin.read())
        except PolicyError as exc:
            status = 1
            for path, message in exc.issues or [("$", str(exc))]:
                print(f"{name}: {path}: {message}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            print(f"{name}: valid (policy_id {policy_id(document)})")
    return status
