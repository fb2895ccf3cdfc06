"""The ``intelliflow`` command: one sub-command per job, each a thin runner over the library.

Each command group is a module of :mod:`intelliflow.recipes.commands` that registers its own
subcommands. Run ``intelliflow --help`` for the list and ``intelliflow COMMAND --help`` for each.
Errors from bad input (``intelliflow.errors``) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from intelliflow.errors import IntelliflowError


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMAND_GROUPS

    parser = argparse.ArgumentParser(
        prog="intelliflow",
        description="Task-oriented semantic communication: split captioning models, learned feature "
                    "codecs and simulated wireless channels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in COMMAND_GROUPS.items().values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except IntelliflowError as exc:
        print(f"intelliflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
