"""``palisade policy validate|suggest|publish``: dispatch to the owning package."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("palisade.policy.cli", "validate_main", "check a policy file"),
    "suggest": ("palisade_analyzer.cli", "suggest_main", "propose a policy"),
    "publish": ("palisade_cli.publish", "main", "store a policy in SSM"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: palisade policy {validate,suggest,publish} ...")
        for name, (_, _, text) in SUBCOMMANDS.items():
            print(f"  {name:<9} {text}")
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(
            f"palisade policy: unknown subcommand {argv[0]!r}; expected one of "
            f"{', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module_name, func_name, _ = SUBCOMMANDS[argv[0]]
    func: Callable[[list[str]], int] = getattr(
        importlib.import_module(module_name), func_name
    )
    return func(argv[1:])
