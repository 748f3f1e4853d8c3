"""A Django bank for the barrier's Django tests: settings, views and URLs, one per database.

``configure(databases)`` sets Django up in this process (once: Django's settings are
the process's) with the given ``DATABASES`` aliases, each a different backend; the
URL conf then serves, per alias, ``/<alias>/debit`` (a saga action: fails definitely
when the balance is short), ``/<alias>/debit-undo`` (its compensation),
``/<alias>/slow-debit`` (a debit that holds its transaction open a while),
``/<alias>/balance-echo`` (returns extra fields), ``/<alias>/wrong`` (returns a
response, which a barrier view must not) and ``/<alias>/query-prepared``.
``serve()`` runs Django's WSGI application under a real WSGI server in a thread.

The views use Django's own connection, ``connections[alias]``, with raw SQL: the bank
has no models, so it needs no app and no migrations.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from legato import Failure
from legato.participant.django import barrier_view, create_table, query_prepared_view

ACCOUNTS = "CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"


def configure(databases: dict[str, dict[str, Any]]) -> None:
    """Configure Django for this process with ``databases``, then create each bank."""
    import django
    from django.conf import settings

    if "mysql" in {db["ENGINE"].rsplit(".", 1)[-1] for db in databases.values()}:
        import pymysql

        pymysql.install_as_MySQLdb()  # Django's MySQL backend on PyMySQL: no compiler needed
        # and PyMySQL's submodules under their MySQLdb names too: else Django's imports of
        # MySQLdb.err, MySQLdb.constants... run those files again as new modules and set
        # them on the one module object, so that pymysql.err.OperationalError would no
        # longer be the class PyMySQL raises, in every test of this process
        for name, module in list(sys.modules.items()):
            if name.startswith("pymysql."):
                sys.modules.setdefault("MySQLdb" + name.removeprefix("pymysql"), module)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="a test bank's key",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        DATABASES=databases,
        INSTALLED_APPS=[],
        # the CSRF middleware is on, as in a new project: the barrier views are exempt
        MIDDLEWARE=[
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        USE_TZ=True,
    )
    django.setup()
    from django.db import connections

    for alias in databases:
        with connections[alias].cursor() as cur:
            cur.execute(ACCOUNTS)
        create_table(using=alias)
    global urlpatterns
    urlpatterns = [p for alias in databases for p in _paths(alias)]


def reset(alias: str, balances: dict[int, int]) -> None:
    """Set the accounts of bank ``alias`` to ``balances``."""
    from django.db import connections, transaction

    with transaction.atomic(using=alias), connections[alias].cursor() as cur:
        cur.execute("DELETE FROM account")
        for account, balance in balances.items():
            cur.execute("INSERT INTO account (id, balance) VALUES (%s, %s)", [account, balance])


def rows(alias: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    from django.db import connections

    with connections[alias].cursor() as cur:
        cur.execute(sql, list(params))
        return [tuple(r) for r in cur.fetchall()]


def execute(alias: str, sql: str, *params: object) -> int:
    """Run ``sql`` on Django's connection ``alias``; the number of rows it changed."""
    from django.db import connections

    with connections[alias].cursor() as cur:
        cur.execute(sql, list(params))
        return int(cur.rowcount)


def _move(request: Any) -> tuple[int, int]:
    body = json.loads(request.body or b"{}")
    return int(body["account"]), int(body["amount"])


def _paths(alias: str) -> list[Any]:
    from django.db import connections
    from django.http import HttpResponse
    from django.urls import path

    def take(request: Any) -> None:
        account, amount = _move(request)
        with connections[alias].cursor() as cur:
            cur.execute(
                "UPDATE account SET balance = balance - %s WHERE id = %s AND balance >= %s",
                [amount, account, amount],
            )
            if cur.rowcount == 0:
                raise Failure(f"account {account} has less than {amount}")

    @barrier_view(using=alias)
    def debit(request: Any) -> None:
        take(request)

    @barrier_view(using=alias)
    def slow_debit(request: Any) -> None:
        take(request)  # then hold the transaction open
        time.sleep(float(request.GET.get("hold", "0.5")))

    @barrier_view(using=alias)
    def debit_undo(request: Any) -> None:
        account, amount = _move(request)
        with connections[alias].cursor() as cur:
            cur.execute(
                "UPDATE account SET balance = balance + %s WHERE id = %s", [amount, account]
            )

    @barrier_view(using=alias)
    def balance_echo(request: Any) -> dict[str, object]:
        account, _ = _move(request)
        ((balance,),) = rows(alias, "SELECT balance FROM account WHERE id = %s", account)
        return {"balance": balance}

    @barrier_view(using=alias)
    def wrong(request: Any) -> Any:
        account, amount = _move(request)
        with connections[alias].cursor() as cur:
            cur.execute(
                "UPDATE account SET balance = balance - %s WHERE id = %s", [amount, account]
            )
        return HttpResponse("done")  # a barrier view returns None or a dict: rolled back

    views: list[tuple[str, Callable[..., Any]]] = [
        ("debit", debit),
        ("slow-debit", slow_debit),
        ("debit-undo", debit_undo),
        ("balance-echo", balance_echo),
        ("wrong", wrong),
        ("query-prepared", query_prepared_view(using=alias)),
    ]
    return [path(f"{alias}/{name}", view) for name, view in views]


urlpatterns: list[Any] = []


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def serve() -> Iterator[str]:
    """Django's WSGI application under a threading WSGI server on a free port."""
    from django.core.wsgi import get_wsgi_application

    server = make_server(
        "127.0.0.1", 0, get_wsgi_application(), server_class=_Server, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
