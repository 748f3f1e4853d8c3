"""``legato serve``: run the coordinator service (native API, DTM's API, /health).

On SIGTERM (or SIGINT) each worker stops gracefully (``server._signals``): readiness
off, waits answered, no new op, the ops in flight given ``--grace`` seconds, the
leases released; then the command exits 0. A second signal stops it at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
from typing import Any

from ..settings import process_settings
from .edge import (
    add_edge_arguments,
    check_exposure,
    configure_logs,
    edge_settings,
    server_options,
)
from .log_access import add_log_argument
from .times import parse_age


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the coordinator as an HTTP service",
        description=(
            "Serve the native API (/v1, OpenAPI at /openapi.json), DTM's API "
            "(/api/dtmsvr) and /health. Any number of processes may share one "
            "PostgreSQL log."
        ),
    )
    add_log_argument(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=36789, help="default: DTM's, %(default)s")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes, each with its own coordinator"
    )
    serve.add_argument(
        "--owner", default=None, help="this coordinator's lease owner name (default: host:pid)"
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        help="seconds a participant may take to answer, where a step sets none (10)",
    )
    serve.add_argument(
        "--lease",
        type=float,
        default=None,
        help="seconds another coordinator waits before taking over a dead one's work",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, seconds the ops in flight may take to finish before they are cut "
        "(10); keep it under the orchestrator's own (Kubernetes: 30)",
    )
    serve.add_argument(
        "--broker",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a broker msg branches may publish to (broker://NAME/topic); repeatable",
    )
    serve.add_argument(
        "--retention",
        type=parse_age,
        default=None,
        metavar="AGE",
        help="delete transactions that ended longer ago than this (7d, 12h...), in batches",
    )
    serve.add_argument(
        "--alert-webhook",
        default=None,
        metavar="URL",
        help="POST a JSON alert here when a transaction becomes stuck",
    )
    serve.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default=None,
        help="auto: text on a terminal, JSON otherwise",
    )
    serve.add_argument(
        "--xa-namespace",
        metavar="NS",
        help="the namespace of this coordinator's XA branches (default: from its log); "
        "1-16 of A-Z a-z 0-9 - _ .",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--participant",
        action="append",
        metavar="HOST:PORT",
        help="a participant URL must match one of these (*.svc:8000, 10.0.0.*:*); "
        "repeatable; default: any",
    )
    serve.add_argument("--max-payload-bytes", metavar="SIZE", help="one op's payload cap (256KiB)")
    serve.add_argument(
        "--max-answer-bytes", metavar="SIZE", help="a participant's answer read up to (1MiB)"
    )
    add_edge_arguments(serve)
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ._supervisor import Supervisor

    brokers = {}
    for spec in args.broker:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise SystemExit(f"legato serve: --broker takes NAME=URL, not {spec!r}")
        brokers[name] = url
    if args.owner and args.workers > 1:
        raise SystemExit("legato serve: --owner names one process; drop it with --workers")
    settings = edge_settings(
        args,
        log=args.log,
        owner=args.owner,
        request_timeout=args.request_timeout,
        lease=args.lease,
        grace=args.grace,
        brokers=brokers or None,
        retention=args.retention,
        alert_webhook=args.alert_webhook,
        log_level=args.log_level.upper(),
        log_format=args.log_format,
        participants=args.participant,
        max_payload_bytes=args.max_payload_bytes,
        max_answer_bytes=args.max_answer_bytes,
        xa_namespace=args.xa_namespace,
    )
    configure_logs(settings)
    check_exposure("serve", args.host, settings, args.insecure)
    # the app is built in each worker process from these (uvicorn's factory mode)
    os.environ.update(settings.to_env())
    metrics_dir = None
    if args.workers > 1 and not process_settings().metrics_dir:
        # the workers share one port, so a scrape reaches any one of them: they keep
        # their metrics in files here, and each renders all of them (observe.metrics)
        metrics_dir = tempfile.mkdtemp(prefix="legato-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config = uvicorn.Config(
        "legato.server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        # the requests under way when the listener closes: waits are answered at once,
        # the rest are short; never longer than the grace
        timeout_graceful_shutdown=max(1, round(settings.grace)),
        **server_options(settings),
    )
    # uvicorn raises the signal it stopped on again once it has stopped, for whoever
    # handled it before: here, no one; the stop was graceful, the exit status is 0
    signal.signal(signal.SIGTERM, _stopped)
    try:
        if config.workers > 1:
            Supervisor(config, sockets=[config.bind_socket()]).run()
        else:
            uvicorn.Server(config).run()
    except KeyboardInterrupt:  # SIGINT raised again, as above
        pass
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _stopped(sig: int, frame: Any) -> None:
    """The signal a stopped server raises again: the stop is done."""
