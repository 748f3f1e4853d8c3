"""The shared-servers check (``tests.support.server_settings``) against real servers: a
throwaway PostgreSQL and a throwaway MariaDB stand in for the shared ones, and are
reconfigured and restarted as no test may do to those."""

from __future__ import annotations

import time

import pytest

from tests.support.server_settings import START, compare, mariadb, postgresql
from tests.support.servers import MariaServer, PgServer, maria_problem, pg_problem
from tests.support.services import need_service

pytestmark = pytest.mark.slow


def test_the_check_sees_an_alter_system_a_reload_and_a_restart_of_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_service("a throwaway PostgreSQL server", pg_problem())
    with PgServer() as pg:
        monkeypatch.setenv("LEGATO_TEST_PG", pg.url())
        before = {"postgresql": postgresql()}
        pg.execute("CREATE DATABASE quiet")  # work, not a change of settings
        assert compare(before, {"postgresql": postgresql()}) == []

        pg.execute("ALTER SYSTEM SET work_mem = '12MB'")  # pending: not yet reloaded
        (pending,) = compare(before, {"postgresql": postgresql()})
        assert "work_mem" in pending and "postgresql.auto.conf" in pending

        pg.execute("SELECT pg_reload_conf()")
        changes = compare(before, {"postgresql": postgresql()})
        assert "postgresql: setting work_mem was 4096, now 12288" in changes

        pg.execute("ALTER SYSTEM RESET work_mem")
        pg.execute("SELECT pg_reload_conf()")
        pg.restart()
        (restarted,) = compare(before, {"postgresql": postgresql()})
        assert restarted.startswith("postgresql: restarted")


def test_the_check_sees_a_set_global_and_a_restart_of_mariadb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_service("MariaDB's server programs, for a throwaway server", maria_problem())
    with MariaServer() as maria:
        monkeypatch.setenv("LEGATO_TEST_MARIADB_PORT", str(maria.port))
        before = {"mariadb": mariadb()}
        maria.execute("CREATE DATABASE quiet")
        maria.execute("CREATE TABLE quiet.t (id int)")
        maria.execute("INSERT INTO quiet.t VALUES (1)")
        assert compare(before, {"mariadb": mariadb()}) == []

        maria.execute("SET GLOBAL max_connections = 77")
        changes = compare(before, {"mariadb": mariadb()})
        assert any(c.startswith("mariadb: variable max_connections was ") for c in changes)

        # its start time comes from an uptime in whole seconds, compared within 2 s: a
        # restart is told from a start that far apart (the shared server's, long before)
        time.sleep(max(0.0, 3.0 - (time.time() - float(before["mariadb"][START]))))
        maria.restart()  # the SET GLOBAL is gone with it; the restart is not
        (restarted,) = compare(before, {"mariadb": mariadb()})
        assert restarted.startswith("mariadb: restarted")
