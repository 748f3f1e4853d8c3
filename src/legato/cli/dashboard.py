"""``legato dashboard``: the web dashboard alone, over a log, with no coordinator.

Its buttons record requests in the log (retry, cancel, force-end); the
coordinator that drives or next claims the transaction carries them out.
"""

from __future__ import annotations

import argparse
import os

from .edge import (
    add_edge_arguments,
    check_exposure,
    configure_logs,
    edge_settings,
    server_options,
)
from .log_access import add_log_argument, check_log_exists


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve the web dashboard over a log, without running a coordinator",
        description=(
            "Serve the transaction list, each transaction's timeline and the operator's "
            "buttons over a log. With LEGATO_API_TOKEN set, the pages and the buttons need "
            "it (log in at /login; --open-reads opens the pages)."
        ),
    )
    add_log_argument(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=36790, help="default: %(default)s")
    p.add_argument("--log-level", default="info")
    add_edge_arguments(p)
    p.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from ..dashboard import create_app
    from ..log import open_log

    settings = edge_settings(args, log=args.log, log_level=args.log_level.upper())
    configure_logs(settings)
    check_exposure("dashboard", args.host, settings, args.insecure)
    os.environ.update(settings.to_env())  # the HTTP protocol's deadlines read them
    check_log_exists(args.log)
    uvicorn.run(
        create_app(open_log(args.log, serving=True), settings=settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        **server_options(settings),
    )
    return 0
