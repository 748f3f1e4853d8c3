"""`legato demo`: the travel booking (as sagas, and with --workflow as workflows), its
services' barriers, and its consistency check.

The demo's verdict is read from the four services' own SQLite files; these
tests read those files too, and tamper with them to see the check notice.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

import legato
from legato.cli import main as cli
from legato.demo.check import MANIFEST, Report, check
from legato.demo.faults import Faults, ReplyLost
from legato.demo.services import CarService, PaymentService
from legato.demo.workload import MERCHANT, Item
from tests.support.demo_steps import run_next_commands


@contextmanager
def database(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        yield db


def checked(directory: Path) -> Report:
    return asyncio.run(check(directory))


def failed(report: Report) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


# -- the whole demo -------------------------------------------------------------------


def test_the_demo_books_trips_with_faults_and_every_check_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["demo", "--n", "60", "--dir", str(tmp_path), "--seed", "2"]) == 0

    out = capsys.readouterr().out
    assert "all checks passed" in out
    assert f"legato tx list --log sqlite:///{tmp_path}/legato.db" in out
    report = checked(tmp_path)
    assert report.ok, report.checks
    outcomes = set(report.trips.values())
    assert outcomes == {"booked", "rolled back"}, "faults should roll some trips back"
    with database(tmp_path / "cars.db") as db:
        fleet, free = db.execute("SELECT sum(capacity), sum(free) FROM inventory").fetchone()
        taken = db.execute("SELECT count(*) FROM reservations WHERE state = 'confirmed'").fetchone()
        held = db.execute("SELECT count(*) FROM reservations WHERE state = 'held'").fetchone()
    booked = sum(1 for s in report.trips.values() if s == "booked")
    assert (taken[0], held[0], free) == (booked, 0, fleet - booked)
    with database(tmp_path / "payments.db") as db:
        merchant = db.execute("SELECT balance FROM accounts WHERE id = ?", (MERCHANT,)).fetchone()
        charged = db.execute(
            "SELECT sum(CASE kind WHEN 'charge' THEN amount ELSE -amount END) FROM payments"
        ).fetchone()
    assert merchant[0] == charged[0] > 0


def test_the_demo_runs_as_a_command_and_says_where_its_log_is(tmp_path: Path) -> None:
    legato_bin = Path(sys.executable).parent / "legato"
    done = subprocess.run(
        [str(legato_bin), "demo", "--n", "40", "--dir", str(tmp_path), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert "legato tx show trip-3-" in done.stdout
    assert checked(tmp_path).ok


def test_right_after_the_demo_legato_tx_list_shows_its_trips_and_its_next_commands_run(
    tmp_path: Path,
) -> None:
    legato_bin = Path(sys.executable).parent / "legato"
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_LOG"}
    done = subprocess.run(
        [str(legato_bin), "demo", "--n", "30", "--seed", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # the log the other commands read when told none, beside the services' directory
    assert (tmp_path / "legato.db").exists() and (tmp_path / "legato-demo").is_dir()
    assert "--log" not in done.stdout.split("next:")[1]
    listed = subprocess.run(
        [str(legato_bin), "tx", "list", "--status", "failed"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = run_next_commands(done.stdout, tmp_path)
    assert shown and all(gid.startswith("trip-5-") for gid in shown)
    rolled_back = [line for line in done.stdout.splitlines() if line.endswith("# rolled back")]
    assert rolled_back and rolled_back[0].split()[-4] in listed.stdout


# -- the same trips as workflows ----------------------------------------------------------


def test_the_workflow_demo_runs_as_a_command_and_prints_the_same_checks(tmp_path: Path) -> None:
    legato_bin = Path(sys.executable).parent / "legato"
    args = ["demo", "--workflow", "--n", "40", "--dir", str(tmp_path), "--seed", "3"]
    done = subprocess.run(
        [str(legato_bin), *args], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "40 trips as workflows, seed 3" in out
    for row in ("hotel fall-backs", "approvals asked", "approved", "refused", "never answered"):
        assert row in out
    assert "booked: a seat, room, car, charge" in out and "all checks passed" in out
    report = checked(tmp_path)
    assert report.ok, report.checks
    assert set(report.trips.values()) == {"booked", "rolled back"}
    with database(tmp_path / "hotels.db") as db:
        # a sold-out hotel, then the trip's next one: two hotel steps, one room
        fell_back = db.execute(
            "SELECT count(DISTINCT r.gid) FROM reservations r JOIN barrier b"
            " ON b.gid = r.gid AND b.outcome = 'failed' AND b.step LIKE '%.hotel'"
        ).fetchone()[0]
    assert fell_back > 0


def test_workflows_refused_or_never_approved_are_rolled_back_and_hold_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--workflow", "--n", "30", "--dir", str(tmp_path), "--seed", "4"]
    approvals = ["--approve-over", "0", "--refuse", "0.3", "--unanswered", "0.3"]
    assert cli([*args, *approvals, "--approval-wait", "0.5", "--decline", "0"]) == 0

    out = capsys.readouterr().out
    assert "approval refused" in out and "no approval in 0.5 s" in out
    report = checked(tmp_path)
    assert report.ok, report.checks  # among them: rolled back, none held or charged
    booked = [g for g, s in report.trips.items() if s == "booked"]
    with database(tmp_path / "payments.db") as db:
        charged = {g for (g,) in db.execute("SELECT gid FROM payments WHERE kind = 'charge'")}
        refunds = db.execute("SELECT count(*) FROM payments WHERE kind = 'refund'").fetchone()
    # every trip waited for its approval before it paid: the others never reached the card
    assert charged == set(booked) and refunds == (0,)


def test_a_workflow_whose_hotel_will_not_cancel_is_stuck_holding_its_room(
    tmp_path: Path,
) -> None:
    args = ["demo", "--workflow", "--n", "40", "--dir", str(tmp_path), "--seed", "4"]
    assert cli([*args, "--stuck-rate", "0.2"]) == 0

    report = checked(tmp_path)
    stuck = [g for g, s in report.trips.items() if s == "stuck"]
    assert stuck
    assert all(".hotel.compensate" in report.stuck[g] for g in stuck)
    with database(tmp_path / "hotels.db") as db:
        for gid in stuck:
            (state,) = db.execute("SELECT state FROM reservations WHERE gid = ?", (gid,)).fetchone()
            assert state == "held"


def test_the_workflow_demo_is_in_process_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["demo", "--workflow", "--http"]) == 2
    assert "in process" in capsys.readouterr().err


def test_stuck_trips_are_reported_and_keep_their_hotel_room(tmp_path: Path) -> None:
    args = ["demo", "--n", "40", "--dir", str(tmp_path), "--stuck-rate", "0.2", "--seed", "4"]
    assert cli(args) == 0

    report = checked(tmp_path)
    stuck = [g for g, s in report.trips.items() if s == "stuck"]
    assert stuck, "a 20% stuck rate should leave some trip stuck"
    assert set(stuck) == set(json.loads((tmp_path / MANIFEST).read_text())["stuck"])
    assert all("hotel.compensate" in report.stuck[g] for g in stuck)
    with database(tmp_path / "hotels.db") as db:
        for gid in stuck:
            (state,) = db.execute("SELECT state FROM reservations WHERE gid = ?", (gid,)).fetchone()
            assert state == "held", "the hotel refused to cancel: the room is still held"


# -- the check notices a broken database ---------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo run, with enough declines that some trips are rolled back."""
    directory = tmp_path_factory.mktemp("demo")
    assert cli(["demo", "--n", "40", "--dir", str(directory), "--decline", "0.3"]) == 0
    return directory


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, free to tamper with."""
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["log"] = f"sqlite:///{copy / 'legato.db'}"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


TAMPERING = {
    "a cancelled car held again": (
        "cars.db",
        "UPDATE inventory SET free = free - 1 WHERE item = (SELECT item FROM reservations"
        " WHERE id = (SELECT min(id) FROM reservations WHERE state = 'cancelled'));"
        "UPDATE reservations SET state = 'held'"
        " WHERE id = (SELECT min(id) FROM reservations WHERE state = 'cancelled')",
        {"rolled back: none held or charged", "cars: one effect per op"},
    ),
    "a seat gone missing": (
        "flights.db",
        "UPDATE inventory SET free = free - 1 WHERE item = (SELECT min(item) FROM inventory)",
        {"flights: inventory adds up"},
    ),
    "a trip charged twice": (
        "payments.db",
        "INSERT INTO payments (gid, kind, customer, amount, at)"
        " SELECT gid, kind, customer, amount, at FROM payments WHERE kind = 'charge' LIMIT 1;"
        "UPDATE accounts SET balance = balance + 100 WHERE id = 'merchant';"
        "UPDATE accounts SET balance = balance - 100 WHERE id ="
        " (SELECT customer FROM payments WHERE kind = 'charge' LIMIT 1)",
        {
            "payments: one effect per op",
            "booked: a seat, room, car, charge",
            "payments: money adds up",
        },
    ),
    "money from nowhere": (
        "payments.db",
        "UPDATE accounts SET balance = balance + 1 WHERE id = 'merchant'",
        {"payments: money adds up"},
    ),
    "a booked room never confirmed": (
        "hotels.db",
        "UPDATE reservations SET state = 'held' WHERE id ="
        " (SELECT min(id) FROM reservations WHERE state = 'confirmed')",
        {"booked: a seat, room, car, charge", "hotels: one effect per op"},
    ),
}


def test_an_untouched_run_passes_the_check_again(run_copy: Path) -> None:
    assert checked(run_copy).ok
    assert cli(["demo", "--check-only", "--dir", str(run_copy)]) == 0


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_the_check_fails_on_a_tampered_service_database(run_copy: Path, tampering: str) -> None:
    file, sql, expected = TAMPERING[tampering]
    with database(run_copy / file) as db:
        db.executescript(sql)

    assert failed(checked(run_copy)) == expected
    assert cli(["demo", "--check-only", "--dir", str(run_copy)]) == 1


# -- the barrier, one service at a time ----------------------------------------------


def ctx(
    gid: str, step: str, op: legato.OpName, attempt: int = 1, **payload: object
) -> legato.StepContext:
    outputs = {"flight": {"price": 300_00}, "hotel": {"price": 200_00}}
    return legato.StepContext(gid, step, op, attempt, payload, outputs)


ACTION, COMPENSATE = legato.OpName.ACTION, legato.OpName.COMPENSATE


def test_a_charge_whose_reply_was_lost_is_retried_without_charging_twice(tmp_path: Path) -> None:
    faults = Faults(flaky=0, slow=0, decline=0, lost_reply=1.0)
    payments = PaymentService(tmp_path / "payments.db", faults, {"ana": 1000_00})
    try:
        with pytest.raises(ReplyLost):
            payments.charge(ctx("t1", "pay", ACTION, 1, customer="ana"))
        faults.lost_reply = 0
        again = payments.charge(ctx("t1", "pay", ACTION, 2, customer="ana"))
    finally:
        payments.close()

    assert again == {"payment": 1, "customer": "ana", "amount": 500_00}
    with database(tmp_path / "payments.db") as db:
        assert db.execute("SELECT count(*) FROM payments").fetchone() == (1,)
        balances = dict(db.execute("SELECT id, balance FROM accounts").fetchall())
        deliveries = db.execute("SELECT deliveries FROM barrier WHERE gid = 't1'").fetchone()
    assert balances == {"ana": 500_00, MERCHANT: 500_00}
    assert deliveries == (2,)


def test_a_cancel_before_its_hold_does_nothing_and_the_late_hold_is_refused(
    tmp_path: Path,
) -> None:
    cars = CarService(tmp_path / "cars.db", Faults(), [Item("LIS-cars", "LIS", 2, 40_00)])
    try:
        assert cars.cancel(ctx("t2", "car", COMPENSATE, city="LIS", nights=2)) is None
        with pytest.raises(legato.Failure, match="already rolled back"):
            cars.reserve(ctx("t2", "car", ACTION, city="LIS", nights=2))
        held = cars.reserve(ctx("t3", "car", ACTION, city="LIS", nights=2))
        cars.cancel(ctx("t3", "car", COMPENSATE, city="LIS", nights=2))
        cars.cancel(ctx("t3", "car", COMPENSATE, 2, city="LIS", nights=2))
    finally:
        cars.close()

    assert held == {"reservation": 1, "item": "LIS-cars", "price": 80_00}
    with database(tmp_path / "cars.db") as db:
        assert db.execute("SELECT free FROM inventory").fetchone() == (2,)
        assert db.execute("SELECT gid, state FROM reservations").fetchall() == [("t3", "cancelled")]
        outcomes = db.execute("SELECT gid, op, outcome FROM barrier ORDER BY gid, op").fetchall()
    assert outcomes == [
        ("t2", "action", "refused"),
        ("t2", "compensate", "null"),
        ("t3", "action", "done"),
        ("t3", "compensate", "done"),
    ]


def test_the_last_car_goes_to_one_trip_and_the_next_finds_it_sold_out(tmp_path: Path) -> None:
    cars = CarService(tmp_path / "cars.db", Faults(), [Item("LIS-cars", "LIS", 1, 40_00)])
    try:
        cars.reserve(ctx("t4", "car", ACTION, city="LIS", nights=1))
        with pytest.raises(legato.Failure, match="sold out"):
            cars.reserve(ctx("t5", "car", ACTION, city="LIS", nights=1))
        with pytest.raises(legato.Failure, match="sold out"):  # the same answer when redelivered
            cars.reserve(ctx("t5", "car", ACTION, 2, city="LIS", nights=1))
    finally:
        cars.close()

    with database(tmp_path / "cars.db") as db:
        assert db.execute("SELECT free FROM inventory").fetchone() == (0,)
        assert db.execute("SELECT gid FROM reservations").fetchall() == [("t4",)]
