"""``legato demo``'s arguments, and the demo they choose: the travel booking in process
(``run``: sagas, or workflows with ``--workflow``), over HTTP (``--http``: ``http.demo``)
or the choreographed shop (``shop``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from legato.log import DEFAULT_URL

DEFAULT_DIR = "legato-demo"


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a rate is a fraction between 0 and 1, not {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"seconds, more than 0 and at most 60, not {text}")
    return value


def _amount(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"an amount of 0 or more, not {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _service_db(text: str) -> tuple[str, str]:
    kind, _, url = text.partition("=")
    kinds = ("flights", "hotels", "cars", "payments")
    if kind not in kinds or "://" not in url:
        raise argparse.ArgumentTypeError(f"expected KIND=URL, KIND one of {kinds}, not {text}")
    return kind, url


class _Merge(argparse.Action):
    """Collect repeated KIND=URL options into one dict."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        merged: dict[str, str] = dict(getattr(namespace, self.dest) or {})
        assert isinstance(values, tuple)
        merged[str(values[0])] = str(values[1])
        setattr(namespace, self.dest, merged)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        nargs="?",
        choices=("travel", "shop"),
        default="travel",
        help="travel (default): the saga of four services; shop: a choreographed saga "
        "over a broker (--broker)",
    )
    parser.add_argument(
        "--broker",
        choices=("rabbitmq", "nats", "redis"),
        default="redis",
        help="shop: the broker the services talk through (default redis, on its local port)",
    )
    parser.add_argument("--n", type=_positive, default=200, help="trips to book (default 200)")
    parser.add_argument(
        "--orders", type=_positive, default=60, help="shop: orders to place (default 60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for trips and faults (default 1)")
    parser.add_argument(
        "--concurrency", type=_positive, default=32, help="trips in flight at once (default 32)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"where the services' databases go (default ./{DEFAULT_DIR})",
    )
    parser.add_argument(
        "--log",
        metavar="URL",
        help=f"the coordinator's log (default {DEFAULT_URL}, the log the other legato "
        "commands read, so that 'legato tx list' shows the trips; with --dir, "
        "sqlite:///DIR/legato.db)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the databases of earlier runs, and the log if it is in --dir "
        "(default: start afresh; a log elsewhere is always kept)",
    )
    parser.add_argument(
        "--workflow",
        action="store_true",
        help="book each trip as a workflow (plain Python) instead of the saga: it falls "
        "back to the city's other hotel when the first is sold out, and a trip over "
        "--approve-over waits for an approval, which the demo sends (or refuses, or forgets)",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="run the services and the coordinator (legato serve) as separate processes, "
        "talking HTTP",
    )
    parser.add_argument(
        "--service-db",
        metavar="KIND=URL",
        type=_service_db,
        action=_Merge,
        help="with --http: a service's database as a SQLAlchemy URL, e.g. "
        "payments=postgresql+psycopg://localhost/pay (default: a SQLite file in --dir)",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="book nothing: check the databases an earlier run left in --dir",
    )
    faults = parser.add_argument_group("faults (rates are fractions, 0 to 1)")
    faults.add_argument(
        "--sold-out",
        type=_rate,
        default=0.15,
        help="how far short of the demand each city's car fleet is; with --workflow, "
        "each hotel instead (default 0.15)",
    )
    faults.add_argument(
        "--flaky",
        type=_rate,
        default=0.2,
        help="payment calls that fail before reaching the service (default 0.2)",
    )
    faults.add_argument(
        "--lost-reply",
        type=_rate,
        default=0.05,
        help="payment calls that take effect but whose reply is lost (default 0.05)",
    )
    faults.add_argument(
        "--slow",
        type=_rate,
        default=0.05,
        help="payment calls held up past the step's timeout (default 0.05)",
    )
    faults.add_argument(
        "--decline", type=_rate, default=0.05, help="trips whose card is declined (default 0.05)"
    )
    faults.add_argument(
        "--stuck-rate",
        type=_rate,
        default=0.0,
        help="trips declined whose hotel then refuses to cancel: they stay "
        "stuck for an operator (default 0)",
    )

    approvals = parser.add_argument_group("approvals (with --workflow)")
    approvals.add_argument(
        "--approve-over",
        type=_amount,
        metavar="AMOUNT",
        default=1000,
        help="a trip costing more waits for an approval (default 1000)",
    )
    approvals.add_argument(
        "--approval-wait",
        type=_seconds,
        metavar="SECONDS",
        default=3.0,
        help="how long a trip waits for its approval before it is rolled back (default 3)",
    )
    approvals.add_argument(
        "--refuse",
        type=_rate,
        default=0.15,
        help="approvals refused: the trip is rolled back (default 0.15)",
    )
    approvals.add_argument(
        "--unanswered",
        type=_rate,
        default=0.1,
        help="approvals never answered: the trip times out and is rolled back (default 0.1)",
    )


def _where(args: argparse.Namespace) -> None:
    """Fill in ``--dir`` and ``--log``: a run in the default directory writes to the log
    the other commands read by default, so that ``legato tx list`` shows it next; a run in
    a directory of its own keeps its log there."""
    if args.dir is None:
        args.dir = Path(DEFAULT_DIR)
        args.log = args.log or DEFAULT_URL
    elif args.log is None:
        home = args.dir / "shop" if args.scenario == "shop" else args.dir
        args.log = f"sqlite:///{home / 'legato.db'}"


def main(args: argparse.Namespace) -> int:
    _where(args)
    # each demo is imported once chosen: the others' dependencies (SQLAlchemy, Starlette
    # and httpx over HTTP; the brokers and the outbox for the shop) stay unloaded
    if args.workflow and (args.http or args.scenario == "shop"):
        print(
            "legato demo: --workflow books the travel trips in process, not with --http "
            "or the shop",
            file=sys.stderr,
        )
        return 2
    if args.scenario == "shop":
        from .shop.show import main as shop

        return shop(args)
    if args.http:
        from .http.demo import main as over_http

        return over_http(args)
    from .run import main as in_process

    return in_process(args)
