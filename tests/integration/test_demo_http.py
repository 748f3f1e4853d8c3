"""`legato demo --http`: the travel booking through service processes and `legato serve`.

The verdict is read from the services' own databases; these tests read them too,
and call one service process over HTTP the way the coordinator does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from legato.demo.http.check import SERVICES, check
from legato.demo.http.processes import Child, free_port, service_args
from legato.demo.workload import MERCHANT

CHECKS = (
    "every trip ended or is stuck",
    "flights: inventory adds up",
    "hotels: one effect per op",
    "cars: inventory adds up",
    "payments: money adds up",
    "payments: one effect per op",
    "booked: a seat, room, car, charge",
    "rolled back: none held or charged",
)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def legato(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "legato"), *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env={**os.environ, "COLUMNS": "200"},  # whole table lines, whatever the terminal
    )


# -- the whole demo -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of 40 trips, with enough declines that some are rolled back."""
    directory = tmp_path_factory.mktemp("demo-http")
    done = legato("demo", "--http", "--n", "40", "--dir", str(directory), "--decline", "0.2")
    assert done.returncode == 0, done.stdout + done.stderr
    return directory, done.stdout


def test_the_http_demo_books_trips_with_faults_and_every_check_passes(
    demo_run: tuple[Path, str],
) -> None:
    directory, out = demo_run

    assert "all checks passed" in out
    for name in CHECKS:
        assert any(name in line and " ok " in line for line in out.splitlines()), name
    assert f"legato tx list --log sqlite:///{directory}/legato.db" in out
    report = asyncio.run(check(directory))
    assert report.ok, report.checks
    assert set(report.trips.values()) == {"booked", "rolled back"}


def test_the_http_demo_leaves_the_services_databases_consistent(
    demo_run: tuple[Path, str],
) -> None:
    directory, _ = demo_run
    report = asyncio.run(check(directory))
    booked = sum(1 for s in report.trips.values() if s == "booked")

    for service in ("flights", "hotels", "cars"):
        ((capacity, free),) = rows(
            directory / f"{service}.db", "SELECT sum(capacity), sum(free) FROM inventory"
        )
        held = rows(
            directory / f"{service}.db", "SELECT count(*) FROM reservations WHERE state = 'held'"
        )
        assert (held[0][0], free) == (booked, capacity - booked), service
    payments = directory / "payments.db"
    ((funded,),) = rows(payments, "SELECT total FROM funding")
    ((total, merchant),) = rows(
        payments,
        f"SELECT sum(balance), sum(CASE id WHEN '{MERCHANT}' THEN balance END) FROM accounts",
    )
    charges = rows(payments, "SELECT count(*) FROM payments WHERE kind = 'charge'")
    assert total == funded and merchant > 0 and charges[0][0] == booked
    # every process stopped cleanly: nothing in their logs but the coordinator's lines
    # about transactions (the injected faults: unknown outcomes are warnings) and the
    # graceful stop it was asked for (SIGTERM), said at INFO, never a warning or worse
    logs = {p.name: p.read_text().splitlines() for p in directory.glob("*.log")}
    assert set(logs) == {
        "flights.log",
        "hotels.log",
        "cars.log",
        "payments.log",
        "legato-serve.log",
    }
    others = [
        line
        for name, lines in logs.items()
        for line in lines
        if not (name == "legato-serve.log" and _ours(json.loads(line)))
    ]
    assert others == []


def test_the_check_fails_on_a_tampered_service_database(
    demo_run: tuple[Path, str], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(demo_run[0], copy)
    manifest = json.loads((copy / "trips.json").read_text())
    manifest["log"] = f"sqlite:///{copy / 'legato.db'}"
    (copy / "trips.json").write_text(json.dumps(manifest))
    services = {
        k: f"sqlite:///{copy / f'{k}.db'}" for k in ("flights", "hotels", "cars", "payments")
    }
    (copy / SERVICES).write_text(json.dumps(services))
    assert legato("demo", "--http", "--check-only", "--dir", str(copy)).returncode == 0

    with closing(sqlite3.connect(copy / "cars.db")) as db, db:
        db.execute(
            "UPDATE reservations SET state = 'held' WHERE id ="
            " (SELECT min(id) FROM reservations WHERE state = 'cancelled')"
        )

    again = legato("demo", "--http", "--check-only", "--dir", str(copy))
    assert again.returncode == 1
    assert "consistency check failed" in again.stdout
    failed = {c.name for c in asyncio.run(check(copy)).checks if not c.ok}
    assert failed == {
        "cars: inventory adds up",
        "cars: one effect per op",
        "rolled back: none held or charged",
    }


# -- one service, called as the coordinator calls it ---------------------------------


@asynccontextmanager
async def service(kind: str, db: str, stock: dict[str, Any], tmp_path: Path) -> AsyncIterator[str]:
    """One service process (no faults) on ``db``; yields its base URL."""
    stock_file = tmp_path / f"{kind}.stock.json"
    stock_file.write_text(json.dumps(stock))
    port = free_port()
    child = Child.spawn(kind, service_args(kind, db, port, stock_file, []), port, tmp_path / "log")
    try:
        async with httpx.AsyncClient() as client:
            await child.ready(client)
        yield child.url
    finally:
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
        assert child.stop() in (0, -signal.SIGTERM)


async def call(url: str, path: str, gid: str, branch: str, op: str, body: object) -> httpx.Response:
    params = {"gid": gid, "trans_type": "saga", "branch_id": branch, "op": op}
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.post(path, params=params, json=body)


def outcome(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["barrier"])


def sql(db: str, query: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query))]
    finally:
        engine.dispose()


def mariadb_problem() -> str | None:
    try:
        pymysql.connect(host="127.0.0.1", user="root", connect_timeout=3).close()
        return None
    except pymysql.Error as exc:
        return str(exc)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def service_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The SQLAlchemy URL of an empty database for one service, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
    elif request.param == "postgresql":
        url = str(request.getfixturevalue("empty_pg_database"))
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)
    else:
        problem = mariadb_problem()
        if problem is not None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"MariaDB is not reachable: {problem}")
            pytest.skip(f"MariaDB is not reachable: {problem}")
        name = f"legato_d_{uuid.uuid4().hex[:12]}"
        with closing(pymysql.connect(host="127.0.0.1", user="root")) as admin:
            admin.cursor().execute(f"CREATE DATABASE {name}")
            yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
            admin.cursor().execute(f"DROP DATABASE {name}")


async def test_a_charge_delivered_twice_and_a_refund_before_its_charge_change_money_once(
    service_db: str, tmp_path: Path
) -> None:
    stock = {"accounts": {"ana": 1000_00}}
    async with service("payments", service_db, stock, tmp_path) as url:
        pay = {"customer": "ana", "amount": 300_00}
        first = await call(url, "/charge", "t1", "pay", "action", pay)
        again = await call(url, "/charge", "t1", "pay", "action", pay)
        # the trip t2 is rolled back before its charge arrives
        undo = await call(url, "/refund", "t2", "pay", "compensate", pay)
        late = await call(url, "/charge", "t2", "pay", "action", pay)
        refund = await call(url, "/refund", "t1", "pay", "compensate", pay)
        refund_again = await call(url, "/refund", "t1", "pay", "compensate", pay)

    assert [outcome(r) for r in (first, again, undo, late, refund, refund_again)] == [
        "ran",
        "duplicate",
        "null_compensation",
        "hanging",
        "ran",
        "duplicate",
    ]
    assert sorted(sql(service_db, "SELECT gid, kind, amount FROM payments")) == [
        ("t1", "charge", 300_00),
        ("t1", "refund", 300_00),
    ]
    balances = dict(sql(service_db, "SELECT id, balance FROM accounts"))
    assert balances == {"ana": 1000_00, MERCHANT: 0}


async def test_the_last_car_goes_to_one_trip_and_the_next_is_refused_with_409(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'cars.db'}"
    stock = {"items": [["LIS-cars", "LIS", 1, 40_00]]}
    async with service("cars", db, stock, tmp_path) as url:
        trip = {"city": "LIS", "nights": 2}
        held = await call(url, "/reserve", "t1", "car", "action", trip)
        sold_out = await call(url, "/reserve", "t2", "car", "action", trip)
        freed = await call(url, "/cancel", "t1", "car", "compensate", {})
        bad = await call(url, "/reserve", "t3", "car", "action", {"city": 7, "nights": 1})

    assert held.json()["result"] == {"item": "LIS-cars", "price": 80_00}
    assert sold_out.status_code == 409
    assert sold_out.json() == {
        "dtm_result": "FAILURE",
        "message": "sold out: no car left at LIS-cars",
    }
    assert outcome(freed) == "ran"
    assert bad.status_code == 400 and "city" in bad.json()["error"]
    assert sql(db, "SELECT free FROM inventory") == [(1,)]
    assert sql(db, "SELECT gid, state FROM reservations") == [("t1", "cancelled")]


def _ours(line: dict[str, str]) -> bool:
    return line["logger"] == "legato.tx" or (
        line["logger"] == "legato.serve" and line["level"] == "INFO"
    )
