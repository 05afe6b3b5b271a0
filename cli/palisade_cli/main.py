"""Entry point of the ``palisade`` command.

Each subcommand lives in the package it belongs to and is imported only when used,
so ``palisade --help`` stays fast and a missing optional dependency of one command
does not break the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, one-line help). The function takes argv (the
# arguments after the subcommand) and returns an exit status.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "invoke": ("palisade_sandbox.cli", "main", "run a handler in the local sandbox"),
    "analyzer": ("palisade_analyzer.cli", "analyzer_main", "run the analyzer service"),
    "profile": ("palisade_analyzer.cli", "profile_main", "show a learned profile"),
    "alerts": ("palisade_analyzer.cli", "alerts_main", "list alerts"),
    "trail": ("palisade_analyzer.cli", "trail_main", "what an invocation did"),
    "policy": ("palisade_cli.policy", "main", "validate, suggest or publish policies"),
    "layer": ("palisade_cli.layer", "main", "build the Lambda layer zip"),
    "demo": ("palisade_cli.demo", "main", "run the end-to-end demo"),
    "bench": ("palisade_cli.bench", "main", "run the benchmarks"),
}


def _usage() -> str:
    lines = ["usage: palisade COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {spec[2]}" for name, spec in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"palisade: unknown command {name!r}; expected one of "
            f"{', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func: Callable[[list[str]], int] = getattr(
        importlib.import_module(module_name), func_name
    )
    return func(rest)


if __name__ == "__main__":
    sys.exit(main())
