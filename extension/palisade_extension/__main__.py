"""``python -m palisade_extension [--name NAME]``: run the extension.

The launcher in /opt/extensions passes its own file name as ``--name``; Lambda
accepts a registration only under that name.
"""

from __future__ import annotations

import argparse
import os
import sys

from palisade_extension import extension, settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palisade_extension")
    parser.add_argument(
        "--name",
        default=os.environ.get("PALISADE_EXTENSION_NAME", "palisade"),
        help="name to register with (the launcher's file name)",
    )
    args = parser.parse_args(argv)
    values = settings.load()
    extension.configure_logging(values["PALISADE_EXTENSION_LOG_LEVEL"])
    return extension.run(args.name, values)


if __name__ == "__main__":
    sys.exit(main())
