"""The Django view decorator for the barrier, on a real Django project and real databases.

One Django configuration in this process serves the same bank on three databases,
each a different backend: SQLite (``sqlite``), PostgreSQL (``postgresql``) and
MariaDB through Django's MySQL backend (``mariadb``), each a fresh database dropped
after. The answers are checked through Django's test client; the sagas run by
Legato's coordinator against Django's WSGI application under a real WSGI server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import legato
from legato.participant import Barrier
from legato.transports.http import HttpCall
from tests.support import django_bank
from tests.support.services import (
    IN_CI,
    MARIADB_HOST,
    MARIADB_PORT,
    MARIADB_USER,
    maria_unreachable,
    need_service,
    new_maria_database,
    new_pg_database,
    pg_unreachable,
)

ALIASES = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(scope="session")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Django configured with every reachable backend; alias -> why it is absent ("" = up)."""
    absent = {"sqlite": "", "postgresql": pg_unreachable() or "", "mariadb": ""}
    absent["mariadb"] = maria_unreachable() or ""
    databases: dict[str, dict[str, Any]] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "sqlite": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path_factory.mktemp("django") / "bank.db"),
        },
        # every request in a transaction of its own: the op's block is a savepoint in it
        "atomic_requests": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path_factory.mktemp("django") / "atomic.db"),
            "ATOMIC_REQUESTS": True,
        },
    }
    with contextlib.ExitStack() as stack:
        if not absent["postgresql"]:
            url = urlsplit(stack.enter_context(new_pg_database("django_bank")))
            databases["postgresql"] = {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.path.lstrip("/"),
                "USER": url.username or "postgres",
                "PASSWORD": url.password or "",
                "HOST": url.hostname,
                "PORT": url.port or 5432,
            }
        if not absent["mariadb"]:
            databases["mariadb"] = {
                "ENGINE": "django.db.backends.mysql",
                "NAME": stack.enter_context(new_maria_database("django_bank")),
                "USER": MARIADB_USER,
                "HOST": MARIADB_HOST,
                "PORT": MARIADB_PORT,
            }
        django_bank.configure(databases)
        try:
            yield absent
        finally:
            from django.db import connections

            connections.close_all()  # before the databases are dropped


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest, django_site: dict[str, str]) -> str:
    name: str = request.param
    need_service(name, django_site[name] or None)
    django_bank.reset(name, {1: 100, 2: 0})
    return name


def _client() -> Any:
    from django.test import Client

    return Client(raise_request_exception=False)


def _q(gid: str, op: str = "action", branch: str = "01") -> str:
    return f"?gid={gid}&trans_type=saga&branch_id={branch}&op={op}"


def _post(alias: str, view: str, query: str, account: int, amount: int) -> Any:
    body = {"account": account, "amount": amount}
    return _client().post(f"/{alias}/{view}{query}", body, content_type="application/json")


def balance(alias: str, account: int = 1) -> int:
    ((value,),) = django_bank.rows(alias, "SELECT balance FROM account WHERE id = %s", account)
    return int(value)


def barrier_rows(alias: str, gid: str) -> list[tuple[str, str, str]]:
    found = django_bank.rows(
        alias,
        "SELECT branch_id, op, reason FROM legato_barrier WHERE gid = %s ORDER BY branch_id, op",
        gid,
    )
    return [(str(b), str(o), str(r)) for b, o, r in found]


# --- the answers, through Django's test client --------------------------------------------


def test_an_action_runs_once_in_atomic_and_a_duplicate_answers_success(alias: str) -> None:
    gid = uuid.uuid4().hex
    first = _post(alias, "debit", _q(gid), 1, 30)
    again = _post(alias, "debit", _q(gid), 1, 30)
    assert (first.status_code, first.json()) == (200, {"dtm_result": "SUCCESS", "barrier": "ran"})
    assert (again.status_code, again.json()["barrier"]) == (200, "duplicate")
    assert balance(alias) == 70
    assert barrier_rows(alias, gid) == [("01", "action", "action")]


def test_a_business_failure_is_a_409_and_rolls_back_the_barrier_row(alias: str) -> None:
    gid = uuid.uuid4().hex
    short = _post(alias, "debit", _q(gid), 2, 5)
    assert short.status_code == 409
    assert short.json() == {"dtm_result": "FAILURE", "message": "account 2 has less than 5"}
    assert barrier_rows(alias, gid) == []


def test_a_compensation_before_its_action_is_a_null_one_and_the_late_action_hangs(
    alias: str,
) -> None:
    gid = uuid.uuid4().hex
    undo = _post(alias, "debit-undo", _q(gid, "compensate"), 1, 30)
    late = _post(alias, "debit", _q(gid), 1, 30)
    assert undo.json() == {"dtm_result": "SUCCESS", "barrier": "null_compensation"}
    assert late.json() == {"dtm_result": "SUCCESS", "barrier": "hanging"}
    assert balance(alias) == 100
    assert barrier_rows(alias, gid) == [
        ("01", "action", "compensate"),
        ("01", "compensate", "compensate"),
    ]


def test_a_bad_query_string_is_a_400_naming_the_field(alias: str) -> None:
    missing = _post(alias, "debit", "?trans_type=saga&branch_id=01&op=action", 1, 30)
    wrong_op = _post(alias, "debit", "?gid=g&trans_type=saga&branch_id=01&op=try", 1, 30)
    assert (missing.status_code, missing.json()["field"]) == (400, "gid")
    assert (wrong_op.status_code, wrong_op.json()["field"]) == (400, "op")
    assert "dtm_result" not in missing.json()  # not a business failure
    assert balance(alias) == 100


def test_a_view_may_add_fields_to_the_answer_and_a_view_returning_a_response_rolls_back(
    alias: str,
) -> None:
    echo = _post(alias, "balance-echo", _q(uuid.uuid4().hex), 1, 0)
    assert echo.json() == {"dtm_result": "SUCCESS", "barrier": "ran", "balance": 100}
    gid = uuid.uuid4().hex
    wrong = _post(alias, "wrong", _q(gid), 1, 30)
    assert wrong.status_code == 500  # a programming error: the coordinator retries
    assert balance(alias) == 100  # its debit rolled back with its barrier row
    assert barrier_rows(alias, gid) == []


def test_query_prepared_answers_for_a_msg_local_transaction(alias: str) -> None:
    from legato.participant.django import run_in_barrier

    committed, never = uuid.uuid4().hex, uuid.uuid4().hex
    result = run_in_barrier(
        Barrier.for_msg(committed),
        lambda: django_bank.execute(alias, "UPDATE account SET balance = 1 WHERE id = 2"),
        using=alias,
    )
    assert (result.ran, result.value, balance(alias, 2)) == (True, 1, 1)
    done = _client().get(f"/{alias}/query-prepared?gid={committed}")
    lost = _client().get(f"/{alias}/query-prepared?gid={never}")
    empty = _client().get(f"/{alias}/query-prepared?gid=")
    assert (done.status_code, done.json()) == (200, {"dtm_result": "SUCCESS"})
    assert (lost.status_code, lost.json()["dtm_result"]) == (409, "FAILURE")
    assert (empty.status_code, empty.json()["field"]) == (400, "gid")
    assert barrier_rows(alias, never) == [("00", "msg", "rollback")]


def test_under_atomic_requests_the_op_is_a_savepoint_of_the_request_transaction(
    django_site: dict[str, str],
) -> None:
    alias = "atomic_requests"
    django_bank.reset(alias, {1: 100, 2: 0})
    gid = uuid.uuid4().hex
    ran = _post(alias, "debit", _q(gid), 1, 30)
    short = _post(alias, "debit", _q(gid, branch="02"), 2, 5)
    again = _post(alias, "debit", _q(gid), 1, 30)
    assert [a.status_code for a in (ran, short, again)] == [200, 409, 200]
    assert again.json()["barrier"] == "duplicate"
    assert (balance(alias, 1), balance(alias, 2)) == (70, 0)
    assert barrier_rows(alias, gid) == [("01", "action", "action")]


def test_an_async_view_is_refused_when_decorated(django_site: dict[str, str]) -> None:
    from legato.participant.django import barrier_view

    async def view(request: Any) -> None:
        return None

    with pytest.raises(TypeError, match="takes a sync view"):
        barrier_view(view)


# --- served by a real WSGI server, called by Legato's coordinator -------------------------


def _saga(url: str, alias: str) -> legato.Saga:
    saga = legato.Saga(f"django_bank_{alias}")
    for name, account, amount in (("first", 1, 30), ("second", 2, 5)):
        body = {"account": account, "amount": amount}
        saga.step(
            name,
            action=HttpCall(f"{url}/{alias}/debit", body=body),
            compensate=HttpCall(f"{url}/{alias}/debit-undo", body=body),
        )
    return saga


def _run(saga: legato.Saga, log: Path) -> tuple[str, Any]:
    async def main() -> tuple[str, Any]:
        async with legato.Coordinator(f"sqlite:///{log}") as coordinator:
            handle = await coordinator.submit(saga, {})
            return handle.gid, await handle.result()

    return asyncio.run(main())


def test_a_saga_through_the_served_project_commits_each_step_once(
    alias: str, tmp_path: Path
) -> None:
    django_bank.reset(alias, {1: 100, 2: 10})
    with django_bank.serve() as url:
        gid, outcome = _run(_saga(url, alias), tmp_path / "log.db")
        # the coordinator's retry of an op that already took effect: answered, not run
        again = httpx.post(
            f"{url}/{alias}/debit{_q(gid, branch='first')}", json={"account": 1, "amount": 30}
        )
    assert outcome.status == "succeeded", outcome.reason
    assert again.json()["barrier"] == "duplicate"
    assert (balance(alias, 1), balance(alias, 2)) == (70, 5)
    assert barrier_rows(alias, gid) == [
        ("first", "action", "action"),
        ("second", "action", "action"),
    ]


def test_a_saga_whose_step_fails_compensates_through_the_served_project(
    alias: str, tmp_path: Path
) -> None:
    with django_bank.serve() as url:
        gid, outcome = _run(_saga(url, alias), tmp_path / "log.db")  # account 2 holds 0
    assert outcome.status == "failed"
    assert "account 2 has less than 5" in str(outcome.reason)
    assert (balance(alias, 1), balance(alias, 2)) == (100, 0)
    assert barrier_rows(alias, gid) == [
        ("first", "action", "action"),
        ("first", "compensate", "compensate"),  # the credit ran
        ("second", "action", "compensate"),  # the action never committed
        ("second", "compensate", "compensate"),  # a null compensation
    ]


def test_a_compensation_racing_its_action_waits_for_it_and_undoes_it(alias: str) -> None:
    gid = uuid.uuid4().hex
    move = {"account": 1, "amount": 30}
    with django_bank.serve() as url, concurrent.futures.ThreadPoolExecutor(2) as pool:
        # the action writes its barrier row, debits, then holds its transaction open
        action = pool.submit(
            httpx.post, f"{url}/{alias}/slow-debit{_q(gid)}&hold=1.0", json=move, timeout=30
        )
        time.sleep(0.4)
        # its compensation comes in meanwhile: its insert of the action's row waits on the
        # database's lock until the action commits, then finds that row: not a null one
        undo = pool.submit(
            httpx.post, f"{url}/{alias}/debit-undo{_q(gid, 'compensate')}", json=move, timeout=30
        )
        answers = [action.result().json()["barrier"], undo.result().json()["barrier"]]
    assert answers == ["ran", "ran"]
    assert balance(alias) == 100
    assert barrier_rows(alias, gid) == [
        ("01", "action", "action"),
        ("01", "compensate", "compensate"),
    ]


def test_ci_has_every_backend(django_site: dict[str, str]) -> None:
    if IN_CI:
        assert not any(django_site.values()), django_site
