"""The fixtures every folder shares: real databases created and dropped per test, the
log a backend-neutral test runs on, and the scripted HTTP participant.

A fixture that needs PostgreSQL skips where the server is absent, except under
``CI=true``, where it fails (``tests.support.services``). Each PostgreSQL test gets
a fresh database cloned from a migrated template (``CREATE DATABASE ... TEMPLATE``):
real, fast, isolated.

``LEGATO_TEST_LOG`` (``sqlite``, the default, or ``postgres``) picks the log that the
backend-neutral suites run on; ``scripts/test`` runs them once with each.

Helpers live in ``tests/support/``, imported by their full name; this file and the
folders' conftests hold fixtures only.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import xa as support_xa
from tests.support.scripted_participant import Participant, scripted_participant
from tests.support.servers import PgServer, pg_problem
from tests.support.services import (
    maria_unreachable,
    need_service,
    new_pg_database,
    pg_execute,
    pg_unreachable,
    pg_url,
)
from tests.support.xa import PREPARED, XaDatabases

# one template per pytest process: two runs at once on the shared server never meet
_TEMPLATE = f"legato_tmpl_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database with Legato's schema, migrated once per session, to clone from."""
    need_service("PostgreSQL", pg_unreachable())
    from legato.log.postgres import PostgresLog

    pg_execute(f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)")
    pg_execute(f"CREATE DATABASE {_TEMPLATE}")

    async def migrate() -> None:
        log = PostgresLog(pg_url(_TEMPLATE))
        await log.open()
        await log.close()

    asyncio.run(migrate())
    yield _TEMPLATE
    pg_execute(f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)")


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database holding Legato's schema, dropped after."""
    with new_pg_database("legato_t", template=pg_template) as url:
        yield url


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after."""
    with new_pg_database("legato_e") as url:
        yield url


@pytest.fixture(scope="session")
def prepared_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of the session's own that takes prepared transactions, for the
    XA tests (the shared one keeps ``max_prepared_transactions`` at 0); removed after."""
    need_service("PostgreSQL's server programs, for a throwaway server", pg_problem())
    with PgServer(settings=PREPARED) as pg:
        yield pg


@pytest.fixture
def xa_databases(prepared_pg: PgServer) -> XaDatabases:
    """``xa_databases(prefix)``: a new database of one name in ``prepared_pg`` and in the
    shared MariaDB, for two-phase commit across them: ``(postgresql://..., mysql://...)``,
    dropped after (see ``tests.support.xa``)."""
    need_service("MariaDB", maria_unreachable())
    return functools.partial(support_xa.xa_databases, prepared_pg)


@pytest.fixture(scope="module")
def throwaway_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of the module's own, that its tests may stop, kill and
    restart (never the shared one); removed after. Skips (fails under CI=true) where
    one cannot be started."""
    need_service("a throwaway PostgreSQL server", pg_problem())
    # what it acknowledged survives its kill -9 (a commit not yet written to the kernel
    # would not); fsync stays off, which only the machine crashing would show
    with PgServer(settings={"synchronous_commit": "on"}) as pg:
        yield pg


@pytest.fixture
def throwaway_database(throwaway_pg: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database on ``throwaway_pg``, dropped after (the server
    started again first if the test left it stopped)."""
    name = f"legato_t_{uuid.uuid4().hex[:12]}"
    url = throwaway_pg.create_database(name)
    yield url
    if not (throwaway_pg.data / "postmaster.pid").exists():
        throwaway_pg.start()
    throwaway_pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _log_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    if kind == "postgres":
        return str(request.getfixturevalue("pg_database"))
    raise ValueError(kind)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each log adapter in turn: for the contract suite."""
    return _log_url(request.param, request, tmp_path)


@pytest.fixture
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The durable log chosen by LEGATO_TEST_LOG (sqlite by default, or postgres)."""
    return _log_url(os.environ.get("LEGATO_TEST_LOG", "sqlite"), request, tmp_path)


@pytest.fixture
async def coordinator(log_url: str) -> AsyncIterator[object]:
    from legato import Coordinator

    c = Coordinator(log_url, lease=5.0, poll_interval=0.1)
    async with c:
        yield c


@pytest.fixture
def participant() -> Iterator[Participant]:
    """A scripted HTTP participant on a free port (``tests.support.scripted_participant``),
    for the service and dashboard tests. tests/participant/ has a ``participant`` of its
    own, the barrier's, which stands in for this one there."""
    with scripted_participant() as p:
        yield p
