"""What `legato tx list` / `tx show` print, run for real on a real log: a flow's hops as
its timeline, readable names, compensations not needed, human times, and tables that
fit an 80-column terminal (``--wide``: everything whole)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import pytest

import legato
from legato import Coordinator, Saga, TxStatus
from legato.cli import main
from legato.flow import FlowRecorder

LONG = "a-name-long-enough-that-it-never-fits-beside-the-rest-of-the-row"


async def _record(log_url: str) -> None:
    log = legato.open_log(log_url)
    await log.open()
    try:
        r = FlowRecorder(log)
        await r.hop("order-1", "orders", "order.placed", name="order: 2 lamps")
        await r.hop("order-1", "payments", "order.placed", detail={"took_ms": 12})
        await r.hop("order-1", "inventory", "payment.charged")
        await r.hop("order-1", "payments", "inventory.failed", compensation=True)
        await r.hop(
            "order-1", "orders", "inventory.failed", compensation=True,
            end=TxStatus.FAILED, reason="lamp sold out",
        )  # fmt: skip
        await r.hop("order-1", "notify", "payment.refunded")
    finally:
        await log.close()


async def _book(log_url: str) -> None:
    saga = Saga(LONG)
    saga.step("hotel", action=lambda ctx: "room 7", compensate=lambda ctx: None)
    saga.step("car", action=lambda ctx: "fiat", compensate=lambda ctx: None)
    async with Coordinator(log_url) as c:
        await (await c.submit(saga, {}, gid="trip-ok")).result(timeout=10)


def _cli(log_url: str, *args: str, columns: int = 80) -> str:
    """The real command, in a process of its own, on a terminal ``columns`` wide."""
    done = subprocess.run(
        [sys.executable, "-m", "legato.cli", *args, "--log", log_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": str(columns), "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_flow_s_hops_are_its_timeline_and_its_compensations_the_way_back(
    log_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_record(log_url))
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert main(["tx", "show", "order-1", "--log", log_url]) == 0
    out = capsys.readouterr().out
    assert "flow 'order: 2 lamps'  status failed" in out
    hops = out[out.index("hops") : out.index("timeline (")]
    rows = [" ".join(line.strip("│ ").split()) for line in hops.splitlines() if "│" in line]
    assert [r.split(" │ ")[1:4] for r in rows] == [
        ["orders", "order.placed", "ok"],
        ["payments", "order.placed", "ok"],
        ["inventory", "payment.charged", "ok"],
        ["payments", "↩ inventory.failed", "ok"],
        ["orders", "↩ inventory.failed", "ok"],
        ["notify", "↩ payment.refunded", "ok"],  # compensating by its name
    ]
    assert rows[1].split(" │ ")[4] == "12 ms"  # the took_ms it recorded
    timeline = out[out.index("timeline (") : out.index("events")]
    lanes = [line for line in timeline.splitlines() if "█" in line]
    assert [line.split()[0] for line in lanes] == ["orders:", "payments:", "inventory:"] + ["↩"] * 3
    assert "payments: inventory.failed" in lanes[3]
    assert all(len(line) <= 80 for line in out.splitlines())


def test_tx_list_and_show_fit_80_columns_and_wide_shows_everything(log_url: str) -> None:
    asyncio.run(_book(log_url))
    asyncio.run(_record(log_url))
    listed = _cli(log_url, "tx", "list")
    lines = listed.splitlines()
    assert all(len(line) <= 80 for line in lines), listed
    rows = {line.split("│")[1].strip(): line for line in lines if "│" in line}
    assert "trip-ok" in rows and "order-1" in rows  # the gid whole: the row is findable
    assert "succeeded" in rows["trip-ok"] and "failed" in rows["order-1"]  # and its status
    assert LONG not in listed and "…" in rows["trip-ok"]  # the name ellipsized
    assert "order: 2 la" in rows["order-1"]  # a flow's readable name (cut: a long one is beside it)

    wide = _cli(log_url, "tx", "list", "--wide")
    assert LONG in wide and "order: 2 lamps" in wide and "…" not in wide
    assert max(len(line) for line in wide.splitlines()) > 80

    shown = _cli(log_url, "tx", "show", "trip-ok")
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    ops = shown[shown.index("ops") : shown.index("timeline (")]
    statuses = [" ".join(line.split("│")[3].split()) for line in ops.splitlines() if "│" in line]
    # a succeeded saga's compensations will never run: not needed, not pending
    assert statuses == ["succeeded", "not needed", "succeeded", "not needed"]
    shown_wide = _cli(log_url, "tx", "show", "order-1", "--wide")
    assert "reason=lamp sold out" in shown_wide and "…" not in shown_wide


def test_a_running_saga_s_compensations_stay_pending(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def held() -> None:
        gate = asyncio.Event()

        async def slow(ctx: legato.StepContext) -> None:
            await gate.wait()

        saga = Saga("held")
        saga.step("a", action=slow, compensate=lambda ctx: None)
        async with Coordinator(log_url) as c:
            await c.submit(saga, {}, gid="held-1")
            await asyncio.sleep(0.3)
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["tx", "show", "held-1", "--log", log_url]) == 0
            gate.set()

    asyncio.run(held())
    out = capsys.readouterr().out
    assert "pending" in out and "not needed" not in out


def test_an_epoch_in_an_event_reads_as_a_time_and_how_long_after(
    log_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scheduled() -> None:
        log = legato.open_log(log_url)
        await log.open()
        try:
            r = FlowRecorder(log)
            await r.hop("timed-1", "a", "x.done", detail={"retry_at": time.time() + 2.5})
        finally:
            await log.close()

    asyncio.run(scheduled())
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert main(["tx", "show", "timed-1", "--log", log_url]) == 0
    out = capsys.readouterr().out
    assert "retry_at=" in out and " UTC (in 2.5 s)" in out
    assert not re.search(r"retry_at=\d{6}", out)  # no raw epoch (17964...), a time


def test_a_flow_is_named_by_its_first_hop_and_keeps_that_name(log_url: str) -> None:
    async def run() -> tuple[legato.TxRecord | None, legato.TxRecord | None]:
        log = legato.open_log(log_url)
        await log.open()
        try:
            r = FlowRecorder(log)
            await r.hop("named", "orders", "order.placed", name="order: 1 lamp")
            await r.hop("named", "payments", "order.placed", name="another name")
            await r.hop("unnamed", "orders", "order.placed")
            named, unnamed = await log.load("named"), await log.load("unnamed")
            return (named[0] if named else None), (unnamed[0] if unnamed else None)
        finally:
            await log.close()

    named, unnamed = asyncio.run(run())
    assert named is not None and unnamed is not None
    assert named.options["title"] == "order: 1 lamp"  # the first hop's, kept
    assert unnamed.options["title"] == "flow: order.placed"
    assert named.name == unnamed.name == "wire:flow"  # the name a coordinator goes by
