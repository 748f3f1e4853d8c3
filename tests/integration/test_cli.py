"""`legato migrate` and `legato tx ...` against a real log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import legato
from legato import Coordinator, Failure, RetryPolicy, Saga, StepContext
from legato.cli import main
from tests.support.approval import approval_workflow, shipments
from tests.support.records import make_overdue
from tests.support.workflows import left_behind, waited

FAST = RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.01)


def legato_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "legato.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_version_prints_the_one_version_the_package_is_built_with() -> None:
    done = legato_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"legato {legato.__version__}"
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    # hatch reads the version from _version.py: pyproject.toml names none of its own
    assert 'dynamic = ["version"]' in pyproject
    assert not [line for line in pyproject.splitlines() if line.startswith("version =")]


def test_migrate_builds_the_schema_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    first = legato_cli("migrate", "--log", url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    again = legato_cli("migrate", "--log", url)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_migrate_on_postgres(empty_pg_database: str) -> None:
    first = legato_cli("migrate", "--log", empty_pg_database)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout


def test_tx_commands_refuse_a_log_that_does_not_exist(tmp_path: Path) -> None:
    out = legato_cli("tx", "list", "--log", f"sqlite:///{tmp_path / 'missing.db'}")
    assert out.returncode == 2
    assert "there is no log at" in out.stderr
    assert not (tmp_path / "missing.db").exists()


def test_tx_list_rejects_a_bad_time(tmp_path: Path) -> None:
    out = legato_cli("tx", "list", "--since", "yesterday-ish")
    assert out.returncode == 2 and "neither an ISO time nor a span" in out.stderr


async def _requested(log_url: str, gid: str) -> str | None:
    log = legato.open_log(log_url)
    await log.open()
    try:
        loaded = await log.load(gid)
        assert loaded is not None
        return loaded[0].requested
    finally:
        await log.close()


async def _book(log_url: str) -> None:
    def car(ctx: StepContext) -> None:
        if ctx.payload["car"] == "none":
            raise Failure("no cars left")

    def cancel_hotel(ctx: StepContext) -> None:
        if ctx.payload.get("stuck"):
            raise Failure("hotel refuses to cancel")

    saga = Saga("trip")
    saga.step("hotel", action=lambda ctx: "room 7", compensate=cancel_hotel, compensate_retry=FAST)
    saga.step("car", action=car, compensate=lambda ctx: None)
    async with Coordinator(log_url) as c:
        for gid, payload in (
            ("ok-1", {"car": "fiat"}),
            ("no-car", {"car": "none"}),
            ("stuck-1", {"car": "none", "stuck": True}),
        ):
            await (await c.submit(saga, payload, gid=gid)).result(timeout=10)


def test_tx_list_show_and_retry_read_and_nudge_the_log(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_book(log_url))

    def run(*args: str) -> str:
        capsys.readouterr()
        assert main([*args, "--log", log_url]) == 0
        return capsys.readouterr().out

    listed = json.loads(run("tx", "list", "--json"))
    assert {t["gid"]: t["status"] for t in listed} == {
        "ok-1": "succeeded",
        "no-car": "failed",
        "stuck-1": "aborting",
    }
    failed = json.loads(run("tx", "list", "--json", "--status", "failed"))
    assert [t["gid"] for t in failed] == ["no-car"]
    stuck = json.loads(run("tx", "list", "--json", "--stuck"))
    assert [t["gid"] for t in stuck] == ["stuck-1"]
    assert json.loads(run("tx", "list", "--json", "--since", "1h", "--limit", "1", "--offset", "1"))

    shown = json.loads(run("tx", "show", "no-car", "--json"))
    assert shown["reason"] == "car failed: no cars left"
    assert [(o["branch"], o["op"], o["status"]) for o in shown["ops"]] == [
        ("hotel", "action", "succeeded"),
        ("hotel", "compensate", "succeeded"),
        ("car", "action", "failed"),
        ("car", "compensate", "succeeded"),
    ]
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[0] == "submitted" and kinds[-1] == "status"

    text = run("tx", "show", "stuck-1")
    assert "stuck: compensation hotel.compensate gave up after 2 attempts" in text
    assert "hotel refuses to cancel" in text

    assert "retry requested for stuck-1" in run("tx", "retry", "stuck-1")
    assert asyncio.run(_requested(log_url, "stuck-1")) == "retry"

    capsys.readouterr()
    assert main(["tx", "abort", "ok-1", "--log", log_url]) == 1
    assert "already ended" in capsys.readouterr().err
    assert main(["tx", "show", "nope", "--log", log_url]) == 1
    assert legato.TxStatus.SUCCEEDED == "succeeded"


def test_tx_show_draws_the_timeline_with_the_compensation_path(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_book(log_url))
    capsys.readouterr()
    assert main(["tx", "show", "no-car", "--log", log_url]) == 0
    out = capsys.readouterr().out
    timeline = out[out.index("timeline (") : out.index("events")]
    # a lane's bar is █ cells, ending in ✗ where the attempt failed; a failed attempt
    # shorter than one cell is drawn as the ✗ alone
    lanes = [line for line in timeline.splitlines() if "█" in line or "✗" in line]
    assert [line.split()[0] for line in lanes] == [
        "hotel.action",
        "car.action",
        "↩",  # car.compensate: the compensations in the order they ran
        "↩",  # hotel.compensate
    ]
    assert "✗" in lanes[1] and "failed" in lanes[1]
    assert "car.compensate" in lanes[2] and "ok" in lanes[2]
    assert "hotel.compensate" in lanes[3] and "ok" in lanes[3]


def test_cancel_search_and_stats(log_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_book(log_url))

    def run(*args: str) -> str:
        capsys.readouterr()
        assert main([*args, "--log", log_url]) == 0
        return capsys.readouterr().out

    assert [t["gid"] for t in json.loads(run("tx", "list", "--json", "--search", "-1"))] == [
        "stuck-1",
        "ok-1",
    ]
    stats = json.loads(run("stats", "--json", "--window", "5m"))
    assert stats["counts"] == {"prepared": 0, "submitted": 0, "aborting": 1}
    assert stats["stuck"] == 1
    assert stats["unfinished"] == 1 and stats["started"] == 3
    assert stats["ended"] == {"succeeded": 1, "failed": 1}
    assert stats["oldest_unfinished_age_s"] >= 0
    assert "stuck" in run("stats")

    assert "abort requested for stuck-1" in run("tx", "cancel", "stuck-1")
    shown = json.loads(run("tx", "show", "stuck-1", "--json"))
    assert {"kind": "requested", "detail": {"what": "abort", "by": "cli"}}.items() <= next(
        e for e in shown["events"] if e["kind"] == "requested"
    ).items()


async def test_tx_signal_hands_a_workflow_waiting_in_the_log_its_signal_once(
    log_url: str, tmp_path: Path
) -> None:
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1) as c:
        workflow = approval_workflow(tmp_path / "shipping.db")
        handle = await c.start_workflow(workflow, "order-7", gid="wf-cli")
        command = ("tx", "signal", "wf-cli", "approval", "--log", log_url)
        signal = ("--value", '{"by": "ops"}', "--id", "ticket-42")

        first = await asyncio.to_thread(legato_cli, *command, *signal)
        again = await asyncio.to_thread(legato_cli, *command, *signal)

        assert first.returncode == 0, first.stderr
        assert "signal approval kept for wf-cli" in first.stdout
        assert again.returncode == 0, again.stderr
        assert "approval#ticket-42 was already kept for wf-cli" in again.stdout
        ship = await asyncio.to_thread(
            legato_cli, "tx", "signal", "wf-cli", "ship", "--log", log_url
        )
        assert ship.returncode == 0, ship.stderr
        outcome = await handle.result(timeout=30)
        assert outcome.status is legato.TxStatus.SUCCEEDED, outcome.reason
        assert outcome.result == {"approval": {"by": "ops"}, "again": None}
        assert shipments(tmp_path / "shipping.db") == [("order-7", "ops")]
        signalled = [e for e in await c.events("wf-cli") if e.kind == "signal"]
        assert [(e.detail["signal"], e.detail["by"]) for e in signalled] == [
            ("approval", "cli"),
            ("ship", "cli"),
        ]
        assert signalled[0].detail["id"] == "approval#ticket-42"
        late = await asyncio.to_thread(legato_cli, *command)
        assert late.returncode == 1 and "already ended" in late.stderr


async def _trip(log_url: str, gid: str) -> None:
    saga = Saga("trip")
    saga.step("hotel", action=lambda ctx: "room 7")
    async with Coordinator(log_url) as c:
        await (await c.submit(saga, None, gid=gid)).result(timeout=10)


def test_tx_signal_refuses_what_it_cannot_send(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_trip(log_url, "saga-1"))

    def signal(*args: str) -> tuple[int | str | None, str]:
        capsys.readouterr()
        try:
            code: int | str | None = main(["tx", "signal", *args, "--log", log_url])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        return code, capsys.readouterr().err

    code, err = signal("saga-1", "approval", "--value", "{nope")
    assert code == 2 and "argument --value: not JSON" in err
    code, err = signal("saga-1", "a b")
    assert code == 2 and "argument name: signal: ' ' is not allowed" in err
    code, err = signal("saga-1", "approval", "--id", "ticket/1")
    assert code == 2 and "argument --id: --id: '/' is not allowed" in err
    code, err = signal("saga-1", "approval", "--value", "NaN")
    assert code == 2 and "the signal's value: nan is not a finite number" in err
    code, err = signal("nope", "approval")
    assert code == 1 and "no transaction has gid 'nope'" in err
    code, err = signal("saga-1", "approval")
    assert code == 1 and "saga-1 is a saga, not a workflow" in err


def test_purge_deletes_old_ended_transactions_and_keeps_the_rest(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_book(log_url))
    out = legato_cli("purge", "--log", log_url, "--older-than", "1h")
    assert out.returncode == 0 and "deleted 0 transactions" in out.stdout, out.stderr
    import time

    time.sleep(1.1)
    out = legato_cli("purge", "--log", log_url, "--older-than", "1s", "--batch", "1")
    assert out.returncode == 0 and "deleted 2 transactions" in out.stdout, out.stderr
    capsys.readouterr()
    assert main(["tx", "list", "--json", "--log", log_url]) == 0
    # the unended (stuck) one is never purged
    assert [t["gid"] for t in json.loads(capsys.readouterr().out)] == ["stuck-1"]
    bad = legato_cli("purge", "--log", log_url, "--older-than", "soon")
    assert bad.returncode == 2 and "not an age" in bad.stderr


def test_purge_deletes_old_barrier_rows(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "service.db"
    conn = sqlite3.connect(db)
    from legato.participant import barrier

    barrier.create_table(conn)
    conn.close()
    conn = sqlite3.connect(db)
    for i, age in enumerate((10, 7200, 9000)):
        conn.execute(
            "INSERT INTO legato_barrier (trans_type, gid, branch_id, op, barrier_id, reason,"
            " created_at) VALUES ('saga', ?, 'b', 'action', '01', 'action',"
            " datetime('now', ?))",
            (f"g{i}", f"-{age} seconds"),
        )
    conn.commit()
    conn.close()
    out = legato_cli("purge", "--barrier", f"sqlite:///{db}", "--older-than", "1h")
    assert out.returncode == 0 and "deleted 2 barrier rows" in out.stdout, out.stderr
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT gid FROM legato_barrier")] == ["g0"]
    conn.close()


# -- workflows -------------------------------------------------------------------------------


def test_tx_show_reads_a_workflow_s_journal_and_draws_its_waits_signals_and_rollback(
    log_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    asyncio.run(waited(log_url))

    def show(gid: str) -> str:
        capsys.readouterr()
        assert main(["tx", "show", gid, "--log", log_url]) == 0
        return capsys.readouterr().out

    out = show("wf-undone")
    table = out[out.index("journal") : out.index("timeline (")]
    rows = [" ".join(line.strip("│ ").split()) for line in table.splitlines() if "│" in line]
    assert rows[:2] == [
        "0001 │ step reserve │ succeeded │ 1 │ │ │ tests.support.workflows.reserve",
        "0001 │ compensate reserve │ succeeded │ 1 │ │ │ tests.support.workflows.cancel",
    ]
    assert rows[2] == '0002 │ wait for "approval" │ signalled │ 0 │ │ approval#boss = true'
    assert rows[3].startswith("0003 │ sleep │ woke")
    assert rows[4].startswith("0004 │ step reserve │ failed │ 1 │ full: sold out")
    assert (
        'signal "approval" │ taken │ 0 │ │ approval#boss = true; taken by the wait at 0002'
        in (rows[-2])
    )
    assert 'signal "approval" │ not taken │ 0 │ │ approval#late = false; never taken' in rows[-1]

    timeline = out[out.index("timeline (") : out.index("events")]
    lanes = {line.split("  ")[1].strip(): line for line in timeline.splitlines()[2:]}
    wait = lanes['0002 wait for "approval"']
    assert "░" in wait and '"approval": signal' in wait
    assert "◆" in wait  # where the signal was taken
    assert "asleep" in lanes["0003 sleep"]
    assert "✗" in lanes["0004 step reserve"]
    assert "let go (no task held)" in timeline and "─" in timeline
    marks = [line.split()[0] for line in timeline.splitlines() if "▲" in line]
    assert marks.count("signal") == 2 and 'signal "approval" arrived' in timeline
    # the compensation path comes last: the failed hotel was not undone, the flight was
    backward = [line for line in timeline.splitlines() if line.startswith("↩")]
    assert len(backward) == 1 and "0001 compensate reserve" in backward[0]

    ok = " ".join(show("wf-ok").split())
    assert 'return value │ succeeded │ 0 │ │ = "inn booked" │ return' in ok


def test_a_transaction_no_running_coordinator_claims_is_listed_as_waiting_for_code(
    log_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    asyncio.run(left_behind(log_url, ["left-1", "left-2"]))
    make_overdue(log_url, "left-1", 600)  # due ten minutes ago, and no one took it
    make_overdue(log_url, "left-2", 5)  # due only lately: within the grace

    def run(*args: str) -> str:
        capsys.readouterr()
        assert main([*args, "--log", log_url]) == 0
        return capsys.readouterr().out

    listed = {t["gid"]: t for t in json.loads(run("tx", "list", "--json"))}
    assert listed["left-1"]["waiting_for_code"] == (
        "waiting for code: no coordinator has left@1 (due 10 min ago, claimed by none)"
    )
    assert listed["left-1"]["unclaimed_since"] < time.time() - 599
    assert listed["left-2"]["waiting_for_code"] is None
    assert "waiting for code: no coordinator has left@1" in run("tx", "list")
    assert "waiting for code: no coordinator has left@1" in run("tx", "show", "left-1")
    stats = json.loads(run("stats", "--json"))
    assert [(u["mode"], u["name"], u["count"]) for u in stats["unclaimed"]] == [
        ("workflow", "left@1", 1)
    ]
    assert "left@1: 1 transaction" in run("stats")
