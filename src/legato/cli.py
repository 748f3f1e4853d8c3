"""The ``legato`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._errors import LegatoError


def _demo(args: argparse.Namespace) -> int:
    from ._demo.run import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="legato", description="Distributed transactions for Python."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="book trips through four in-process services, with faults")
    from ._demo.run import add_arguments

    add_arguments(demo)
    demo.set_defaults(func=_demo)
    from ._cli_tx import add_commands

    add_commands(sub)
    from ._cli_ops import add_commands as add_ops

    add_ops(sub)
    from ._cli_serve import add_command

    add_command(sub)
    from ._cli_relay import add_command as add_relay

    add_relay(sub)
    from ._cli_dashboard import add_command as add_dashboard

    add_dashboard(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except LegatoError as exc:
        print(f"legato: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
