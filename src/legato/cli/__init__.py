"""The ``legato`` command: one module per command group.

``serve`` runs the coordinator service, ``dashboard`` the web dashboard alone,
``tx`` lists, shows and nudges transactions, ``ops`` holds the log's upkeep
(``migrate``, ``stats``, ``purge``), ``relay`` publishes an outbox, ``replay``
checks a workflow's code against its journals; ``edge`` is
what the two servers share at their edge, ``log_access`` the ``--log`` flag and
running a command on the log it names, ``times`` the spans and times an operator
types, ``timeline`` the drawing ``legato tx show`` prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import LegatoError


def _demo(args: argparse.Namespace) -> int:
    from ..demo.command import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="legato", description="Distributed transactions for Python."
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"legato {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="book trips through four in-process services, with faults")
    from ..demo.command import add_arguments

    add_arguments(demo)
    demo.set_defaults(func=_demo)
    from . import dashboard, ops, relay, replay, serve, tx

    ops.add_migrate_command(sub)
    tx.add_commands(sub)
    ops.add_commands(sub)
    serve.add_command(sub)
    relay.add_command(sub)
    dashboard.add_command(sub)
    replay.add_commands(sub)
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


__all__ = ["build_parser", "main"]
