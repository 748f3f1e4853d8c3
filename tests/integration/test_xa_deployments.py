"""Two deployments on one pair of database servers: neither ends the other's XA branches.

Both servers are throwaway ones (``MariaServer`` here, the session's ``prepared_pg``),
so what the tests find prepared on them is theirs alone. Each deployment has its
own log, and databases of its own on both servers; its coordinator prepares,
recovers and ends its branches in its namespace (derived from its log), and a
service of its own (DTM's XA flow) prepares branches in its database's namespace
and resolves them through ``legato serve`` on the same log. Issue 12, row 15: on
a shared server, one deployment's recovery (presumed abort) rolled back the
other's prepared branch, whose phase 2 then failed for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from legato import Coordinator, DefinitionError, TxStatus
from legato.demo.http.processes import Child, coordinator_args, free_port, stop_all
from legato.participant import create_table, xa
from tests.support.servers import MariaServer, PgServer, maria_problem
from tests.support.services import need_service
from tests.support.xa import maria_connect

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def maria() -> Iterator[MariaServer]:
    """A MariaDB server of this module's own: XA RECOVER lists every branch on a server."""
    need_service("MariaDB's server programs, for a throwaway server", maria_problem())
    with MariaServer() as server:
        yield server


@dataclass
class Deployment:
    """One deployment: its log, and a ledger database of its own on each server."""

    name: str
    log: str
    pg: str
    maria: str

    def coordinator(self, **options: Any) -> Coordinator:
        resources = {"pg": self.pg, "maria": self.maria}
        return Coordinator(self.log, resources=resources, poll_interval=0.05, **options)

    def connect(self, resource: str) -> Any:
        if resource == "pg":
            return psycopg.connect(self.pg, autocommit=True)
        return maria_connect(self.maria)

    def moves(self, resource: str) -> list[str]:
        """``gid/branch`` of each move committed in the deployment's database."""
        with contextlib.closing(self.connect(resource)) as conn:
            cur = conn.cursor()
            cur.execute("SELECT gid, branch FROM moves ORDER BY gid, branch")
            return [f"{gid}/{branch}" for gid, branch in cur.fetchall()]


def _ledger(conn: Any, engine: str = "") -> None:
    with contextlib.closing(conn):
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE moves (gid varchar(64), branch varchar(64)){engine}")
        create_table(conn)


def deployment(name: str, pg: PgServer, maria: MariaServer) -> Deployment:
    suffix = f"{name}_{uuid.uuid4().hex[:8]}"
    d = Deployment(
        name,
        pg.create_database(f"log_{suffix}"),  # the log: PostgreSQL, which legato serve shares
        pg.create_database(f"app_{suffix}"),
        maria.create_database(f"app_{suffix}"),
    )
    _ledger(d.connect("pg"))
    _ledger(d.connect("maria"), " ENGINE=InnoDB")
    return d


@pytest.fixture
def two(prepared_pg: PgServer, maria: MariaServer) -> Iterator[tuple[Deployment, Deployment]]:
    a, b = deployment("a", prepared_pg, maria), deployment("b", prepared_pg, maria)
    try:
        yield a, b
    finally:
        # whatever the test left prepared is ended, so that the databases can go
        for d in (a, b):
            for resource in ("pg", "maria"):
                with contextlib.closing(d.connect(resource)) as conn:
                    for xid in xa.recover(conn, namespace=xa.EVERY_NAMESPACE):
                        xa.rollback(conn, xid)
        for d in (a, b):
            for url in (d.log, d.pg):
                prepared_pg.execute(
                    f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'
                )
            maria.execute(f"DROP DATABASE IF EXISTS `{d.maria.rsplit('/', 1)[1]}`")


def move(gid: str, branch: str) -> Any:
    """A branch function: a row of its own (a prepared branch keeps its row locks)."""

    def run(conn: Any) -> None:
        conn.cursor().execute("INSERT INTO moves VALUES (%s, %s)", (gid, branch))

    return run


def prepared(*ds: Deployment) -> set[str]:
    """Every branch prepared in the deployments' PostgreSQL databases and on the MariaDB
    server (all this module's), whatever its namespace: ``resource:gid/branch@namespace``."""
    out = set()
    for d in ds:
        for resource in ("pg", "maria"):
            with contextlib.closing(d.connect(resource)) as conn:
                for x in xa.recover(conn, namespace=xa.EVERY_NAMESPACE):
                    out.add(f"{resource}:{x.gid}/{x.branch_id}@{x.namespace}")
    return out


def prepare(d: Deployment, resource: str, gid: str, branch: str, namespace: str | None) -> str:
    """Branch ``branch`` of ``gid`` prepared on a connection then closed; its entry in
    :func:`prepared`."""
    with contextlib.closing(d.connect(resource)) as conn:
        result = xa.prepare_branch(conn, gid, branch, move(gid, branch), namespace=namespace)
    return f"{resource}:{gid}/{branch}@{result.xid.namespace}"


async def in_doubt(c: Coordinator, d: Deployment, gid: str) -> set[str]:
    """``gid`` begun, a branch registered and prepared on each resource, and no decision."""
    await c.begin_xa(gid, timeout_to_fail=120)
    out = set()
    for branch, resource in (("01", "pg"), ("02", "maria")):
        xid = await c.register_xa_branch(gid, branch, resource)
        out.add(await asyncio.to_thread(prepare, d, resource, gid, branch, xid.namespace))
    return out


@contextlib.asynccontextmanager
async def served(d: Deployment, tmp: Path) -> AsyncIterator[str]:
    """``legato serve`` on ``d``'s log; its DTM API's URL, which ``xa.resolve`` asks."""
    port = free_port()
    child = Child.spawn(f"serve-{d.name}", coordinator_args(d.log, port), port, tmp / d.name)
    try:
        async with httpx.AsyncClient() as http:
            await child.ready(http)
        yield f"{child.url}/api/dtmsvr"
    finally:
        stop_all([child])


def resolve(d: Deployment, dtm: str) -> dict[str, list[str]]:
    """``xa.resolve`` on each of ``d``'s databases, as its services run it."""
    out = {}
    for resource in ("pg", "maria"):
        with contextlib.closing(d.connect(resource)) as conn:
            report = xa.resolve(conn, dtm)
        assert report.failed == report.committed == [], report
        out[resource] = report.rolled_back + [f"left {x}" for x in report.left]
    return out


async def test_two_deployments_on_one_pair_of_servers_each_resolve_their_own_branches_only(
    two: tuple[Deployment, Deployment], tmp_path: Path
) -> None:
    a, b = two
    # recover=False: no pass at start-up; each deployment's passes run when the test says
    async with a.coordinator(recover=False) as ca, b.coordinator(recover=False) as cb:
        assert ca.xa_namespace != cb.xa_namespace
        undecided, lost, orphans = {}, {}, {}
        for c, d in ((ca, a), (cb, b)):
            # the same gid in both: two transactions, four branches
            undecided[d.name] = await in_doubt(c, d, "order-7")
            # prepared in the coordinator's namespace, and unknown to its log (lost with it)
            lost[d.name] = {prepare(d, r, "lost-1", "01", c.xa_namespace) for r in ("pg", "maria")}
            # prepared by a service in its database's namespace; it died before registering
            orphans[d.name] = {prepare(d, r, "svc-1", "01", None) for r in ("pg", "maria")}
        everything = set().union(*undecided.values(), *lost.values(), *orphans.values())
        assert prepared(a, b) == everything and len(everything) == 12

        report = await ca.recover_xa()  # A's recovery: A's lost branches only

        assert sorted(report.rolled_back) == ["maria:lost-1/01", "pg:lost-1/01"]
        assert sorted(report.left) == ["maria:order-7/02", "pg:order-7/01"]
        assert report.committed == report.failed == []
        assert prepared(a, b) == everything - lost["a"]

        report = await cb.recover_xa()

        assert sorted(report.rolled_back) == ["maria:lost-1/01", "pg:lost-1/01"]
        assert prepared(a, b) == everything - lost["a"] - lost["b"]

        async with served(a, tmp_path) as dtm_a, served(b, tmp_path) as dtm_b:
            # A's services ask A's coordinator, which never heard of svc-1: roll back
            assert await asyncio.to_thread(resolve, a, dtm_a) == {
                "pg": ["svc-1/01"],
                "maria": ["svc-1/01"],
            }
            assert prepared(a, b) == undecided["a"] | undecided["b"] | orphans["b"]
            assert await asyncio.to_thread(resolve, b, dtm_b) == {
                "pg": ["svc-1/01"],
                "maria": ["svc-1/01"],
            }
        assert prepared(a, b) == undecided["a"] | undecided["b"]

        # each deployment's undecided transaction is still its own to decide: both commit
        for c in (ca, cb):
            outcome = await (await c.submit_tcc("order-7")).result(timeout=30)
            assert outcome.status is TxStatus.SUCCEEDED, outcome
    assert prepared(a, b) == set()
    for d in (a, b):  # the committed branches, and nothing of the rolled back ones
        assert (d.moves("pg"), d.moves("maria")) == (["order-7/01"], ["order-7/02"])


@pytest.mark.parametrize("server", ["mariadb", "postgresql"])
async def test_a_recovery_on_another_deployments_server_leaves_its_prepared_branch_alone(
    two: tuple[Deployment, Deployment], server: str
) -> None:
    """Row 15 as the issue states it: B is a ``memory://`` coordinator whose resource is its
    own database on the server where A has ``order-7/01`` prepared. (PostgreSQL lists a
    database's branches only, so there B's resource is A's very database.)"""
    a, b = two
    resource = "maria" if server == "mariadb" else "pg"
    theirs = b.maria if server == "mariadb" else a.pg
    async with a.coordinator(recover=False) as ca:
        async with ca.xa("order-7") as t:
            conn = a.connect(resource)
            await t.branch(conn, move("order-7", "01"), resource=resource, branch_id="01")
            conn.close()  # MariaDB: the branch stays with its session until it closes
            async with Coordinator("memory://", resources={"b": theirs}) as cb:
                report = await cb.recover_xa()
            assert report.rolled_back == [], "B ended A's branch"
            assert prepared(a) == {f"{resource}:order-7/01@{ca.xa_namespace}"}
        assert t.handle is not None
        outcome = await t.handle.result(timeout=30)
    assert outcome.status is TxStatus.SUCCEEDED, outcome
    assert a.moves(resource) == ["order-7/01"]
    assert prepared(a, b) == set()


async def test_a_branch_id_too_long_for_the_namespace_is_refused_before_anything_is_written(
    two: tuple[Deployment, Deployment],
) -> None:
    a, _ = two
    async with a.coordinator(recover=False, xa_namespace="n" * 16) as c:
        gid = await c.begin_xa("order-8")
        with pytest.raises(xa.XidError, match="MySQL allows 47 beside the namespace"):
            await c.register_xa_branch(gid, "b" * 48, "pg")
        _, ops = await c.get(gid)
    assert ops == []
    with pytest.raises(DefinitionError, match="xa_namespace 'a b' cannot be an XA namespace"):
        Coordinator("memory://", xa_namespace="a b")


def test_legato_serve_refuses_a_namespace_that_cannot_be_one(tmp_path: Path) -> None:
    log = f"sqlite:///{tmp_path / 'log.db'}"
    args = ["serve", "--log", log, "--port", str(free_port()), "--xa-namespace", "a b"]
    out = subprocess.run(
        [sys.executable, "-m", "legato.cli", *args], capture_output=True, text=True, timeout=60
    )

    assert out.returncode != 0
    assert "setting xa_namespace (--xa-namespace or LEGATO_XA_NAMESPACE)" in out.stderr
    assert "'a b' cannot be an XA namespace: it is 1-16 of A-Z a-z 0-9 - _ ." in out.stderr
    assert not (tmp_path / "log.db").exists()  # refused before the log was opened
