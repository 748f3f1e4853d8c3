"""One bank's ledger as an HTTP service, for the XA crash tests and benchmark::

    python -m legato.demo.bank.service --db postgresql://postgres@127.0.0.1/bank_a \\
        --dtm http://127.0.0.1:36789/api/dtmsvr --port 8101 --accounts 4 --balance 100

``--db`` is a PostgreSQL (``postgresql://``) or MariaDB / MySQL (``mysql://``)
database; the service creates its ``account`` table (``--accounts`` rows of
``--balance`` each, in an empty table) and the barrier table where they are
missing. Every request body is ``{"account": 3, "amount": -25}``: add ``amount``
(negative: take) to that account; a balance that would go below zero is a
definite failure (409).

* ``POST /xa`` is DTM's XA flow: ``op=action`` runs the change as a database 2PC
  branch, prepares it and registers this URL with the coordinator;
  ``op=commit`` / ``op=rollback`` is phase 2.
* ``POST /saga`` is the same change as a saga step in Legato's barrier:
  ``op=action`` applies it, ``op=compensate`` applies its opposite.

At start-up, and every ``--resolve-interval`` seconds, the service resolves the
branches it finds prepared in its database (``xa.resolve``): one prepared just
before the service was killed, before it registered, is ended that way. Its
branches are in the XA namespace ``--xa-namespace`` (default: its database's,
``xa.database_namespace``), and resolving touches that namespace's only: other
services and coordinators sharing the database server keep theirs.

Crash points (``LEGATO_FAULTS``, see ``crash``): ``bank.after_prepare`` (prepared, not
registered), ``bank.after_register`` (registered, not answered), ``bank.before_phase2``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import anyio
import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legato import DefinitionError, Failure
from legato.participant import Barrier, BarrierRequestError, create_table, xa
from legato.settings import process_settings

from .crash import CrashPoints

log = logging.getLogger("legato.demo.bank")

SUCCESS = {"dtm_result": "SUCCESS"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _failure(message: str, status: int = 409) -> JSONResponse:
    return JSONResponse({"dtm_result": "FAILURE", "message": message}, status)


def move(account: int, amount: int) -> Callable[[Any], None]:
    """Add ``amount`` to ``account`` (a definite failure if it would go below zero)."""

    def run(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT balance FROM account WHERE id = %s FOR UPDATE", (account,))
            row = cur.fetchone()
            if row is None:
                raise Failure(f"no account {account}")
            if row[0] + amount < 0:
                raise Failure(f"insufficient funds in account {account}")
            cur.execute(
                "UPDATE account SET balance = balance + %s WHERE id = %s", (amount, account)
            )

    return run


class Ledger:
    """The service's database: a connection per thread, kept, except where a MariaDB
    session must close to let a prepared branch go."""

    def __init__(self, url: str, lock_timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres", "mysql", "mariadb"):
            raise DefinitionError(
                f"the ledger's database is postgresql://... or mysql://..., not "
                f"{parts.scheme or url!r} (SQLite has no two-phase commit)"
            )
        self.url = url
        self.mysql = parts.scheme in ("mysql", "mariadb")
        self._mysql = _mysql_options(parts) if self.mysql else {}
        self.lock_timeout = lock_timeout
        self._local = threading.local()

    def _open(self) -> Any:
        if not self.mysql:
            import psycopg

            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        import pymysql  # type: ignore[import-untyped]

        return pymysql.connect(**self._mysql)

    def connect(self) -> Any:
        """A new autocommit connection whose lock waits end after ``lock_timeout``: two
        transfers in opposite directions can each hold, prepared, the row the other
        waits for, in two databases, where neither database can see the deadlock."""
        c = self._open()
        with c.cursor() as cur:
            if self.mysql:
                cur.execute(
                    "SET SESSION innodb_lock_wait_timeout = %s", (max(1, round(self.lock_timeout)),)
                )
            else:
                cur.execute(f"SET lock_timeout = {int(self.lock_timeout * 1000)}")
        return c

    @contextlib.contextmanager
    def conn(self, *, fresh: bool = False) -> Any:
        """A connection for this thread; ``fresh``: a new one, closed after."""
        if fresh:
            c = self.connect()
            try:
                yield c
            finally:
                c.close()
            return
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self.connect()
        try:
            yield c
        except Exception:
            self._local.conn = None  # it may be broken (a restarted database): start anew
            with contextlib.suppress(Exception):
                c.close()
            raise

    def setup(self, accounts: int, balance: int) -> None:
        engine = " ENGINE=InnoDB" if self.mysql else ""
        with self.conn(fresh=True) as c:
            with c.cursor() as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS account "
                    f"(id INT PRIMARY KEY, balance INT NOT NULL){engine}"
                )
                cur.execute("SELECT count(*) FROM account")
                if cur.fetchone()[0] == 0 and accounts:
                    rows = [(i, balance) for i in range(accounts)]
                    cur.executemany("INSERT INTO account VALUES (%s, %s)", rows)
            create_table(c)


def _mysql_options(parts: SplitResult) -> dict[str, Any]:
    """PyMySQL's arguments for ``mysql://user:password@host:port/db``. ``?ssl=true``
    requires TLS and ``?ssl=false`` turns it off; without it, TLS is off to a loopback
    host (it protects nothing there, and PyMySQL, left to use it when the server offers
    it, builds a TLS context per connection: 30 ms, and every MariaDB branch takes a new
    connection) and PyMySQL's default elsewhere."""
    ssl = parse_qs(parts.query).get("ssl", [None])[-1]
    if ssl not in (None, "true", "false"):
        raise DefinitionError(f"the ledger's database URL: ssl= is true or false, not {ssl!r}")
    host = parts.hostname or "127.0.0.1"
    tls: dict[str, Any] = {}
    if ssl == "false" or (ssl is None and host in _LOOPBACK):
        tls = {"ssl_disabled": True}
    elif ssl == "true":
        tls = {"ssl_verify_cert": True}
    return {
        "host": host,
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "autocommit": True,
        "connect_timeout": 10,
        **tls,
    }


class Bank:
    """The handlers; see the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        dtm: str,
        url: str,
        namespace: str | None = None,
        crash: CrashPoints | None = None,
    ) -> None:
        self.ledger = ledger
        self.dtm = dtm.rstrip("/")
        self.url = url  # this service's /xa, as the coordinator calls it
        self.namespace = namespace  # of its XA branches; None: its database's
        self.crash = crash or CrashPoints()  # none armed
        self.http = httpx.Client(timeout=10)

    def xa_action(self, gid: str, branch_id: str, account: int, amount: int) -> JSONResponse:
        # MariaDB keeps a prepared branch with its session: that connection must close
        with self.ledger.conn(fresh=self.ledger.mysql) as c:
            try:
                fn = move(account, amount)
                result = xa.prepare_branch(c, gid, branch_id, fn, namespace=self.namespace)
            except Failure as exc:
                return _failure(str(exc))
        if not result.ok:
            return _failure(f"branch {branch_id} of {gid} was rolled back already")
        self.crash.reach("bank.after_prepare")
        reg = {"gid": gid, "branch_id": branch_id, "trans_type": "xa", "url": self.url}
        reply = self.http.post(f"{self.dtm}/registerBranch", json=reg)
        if reply.status_code == 409:  # the transaction is over: this branch is not in it
            with self.ledger.conn() as c:
                xa.rollback(c, result.xid)
            return _failure(f"the coordinator refused the branch: {reply.text[:300]}")
        if reply.status_code != 200:  # not known whether it registered: xa.resolve decides
            return JSONResponse({"error": f"registerBranch: {reply.status_code}"}, 503)
        self.crash.reach("bank.after_register")
        return JSONResponse(SUCCESS)

    def xa_phase2(self, gid: str, branch_id: str, op: str) -> JSONResponse:
        self.crash.reach("bank.before_phase2")
        with self.ledger.conn() as c:
            end = xa.commit_branch if op == "commit" else xa.rollback_branch
            end(c, gid, branch_id, namespace=self.namespace)
        return JSONResponse(SUCCESS)

    def saga_op(self, barrier: Barrier, account: int, amount: int) -> JSONResponse:
        change = amount if barrier.op == "action" else -amount
        with self.ledger.conn() as c:
            try:
                barrier.call(c, move(account, change))
            except Failure as exc:
                return _failure(str(exc))
        return JSONResponse(SUCCESS)

    async def xa_endpoint(self, request: Request) -> JSONResponse:
        q = request.query_params
        gid, branch_id, op = q.get("gid", ""), q.get("branch_id", ""), q.get("op", "")
        if not gid or not branch_id or op not in ("action", "commit", "rollback"):
            return JSONResponse({"error": "gid, branch_id and op (action|commit|rollback)"}, 400)
        try:
            if op == "action":
                account, amount = await _body(request)
                return await run_in_threadpool(self.xa_action, gid, branch_id, account, amount)
            return await run_in_threadpool(self.xa_phase2, gid, branch_id, op)
        except _BadBody as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except Exception as exc:  # unknown: the caller retries
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 503)

    async def saga_endpoint(self, request: Request) -> JSONResponse:
        try:
            barrier = Barrier.from_query(request.query_params)
            account, amount = await _body(request)
        except (BarrierRequestError, _BadBody) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        try:
            return await run_in_threadpool(self.saga_op, barrier, account, amount)
        except Exception as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 503)

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def resolve(self) -> None:
        try:
            with self.ledger.conn(fresh=True) as c:
                report = xa.resolve(c, self.dtm, namespace=self.namespace)
        except Exception as exc:  # the database or the coordinator is away: next round
            log.warning("resolving prepared branches failed: %s", exc)
            return
        if report.committed or report.rolled_back or report.failed:
            log.warning(
                "resolved prepared branches: committed %s, rolled back %s, failed %s",
                report.committed, report.rolled_back, report.failed,
            )  # fmt: skip


class _BadBody(ValueError):
    pass


async def _body(request: Request) -> tuple[int, int]:
    try:
        body = await request.json()
        account, amount = body["account"], body["amount"]
    except Exception as exc:
        raise _BadBody('the body is {"account": <int>, "amount": <int>}') from exc
    if not isinstance(account, int) or not isinstance(amount, int):
        raise _BadBody("account and amount must be integers")
    return account, amount


def create_app(bank: Bank, resolve_interval: float) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(bank.resolve)  # before the first request

        async def loop() -> None:
            while True:
                await anyio.sleep(resolve_interval)
                await run_in_threadpool(bank.resolve)

        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            yield
            tg.cancel_scope.cancel()

    routes = [
        Route("/xa", bank.xa_endpoint, methods=["POST"]),
        Route("/saga", bank.saga_endpoint, methods=["POST"]),
        Route("/health", bank.health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m legato.demo.bank.service")
    p.add_argument("--db", required=True, help="postgresql://... or mysql://...")
    p.add_argument("--dtm", required=True, help="the coordinator's /api/dtmsvr URL")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--accounts", type=int, default=4)
    p.add_argument("--balance", type=int, default=100)
    p.add_argument("--resolve-interval", type=float, default=5.0)
    p.add_argument("--lock-timeout", type=float, default=2.0, help="seconds a row lock is awaited")
    p.add_argument(
        "--xa-namespace", default=None, help="of this service's XA branches (its database's)"
    )
    args = p.parse_args(argv)
    if args.xa_namespace is not None:
        try:
            xa.check_namespace(args.xa_namespace, "--xa-namespace")
        except xa.XidError as exc:
            p.error(str(exc))
    ledger = Ledger(args.db, args.lock_timeout)
    ledger.setup(args.accounts, args.balance)
    url = f"http://127.0.0.1:{args.port}/xa"
    crash = CrashPoints(process_settings().faults)  # armed by the crash tests
    bank = Bank(ledger, args.dtm, url, args.xa_namespace, crash)
    app = create_app(bank, args.resolve_interval)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
