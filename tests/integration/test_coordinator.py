"""The coordinator end to end, on the log chosen by LEGATO_TEST_LOG (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

import legato
from legato import Coordinator, Failure, RetryPolicy, Saga, StepContext, TxStatus

FAST = RetryPolicy(max_attempts=4, backoff=0.01, max_backoff=0.02)


class Ledger:
    """A participant stand-in that records every call, thread-safely."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def record(self, ctx: StepContext) -> None:
        with self.lock:
            self.calls.append(f"{ctx.step}.{ctx.op}")

    def count(self, what: str) -> int:
        return Counter(self.calls)[what]


async def test_an_unknown_error_is_retried_with_backoff_until_the_step_succeeds(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()

    def flaky(ctx: StepContext) -> str:
        ledger.record(ctx)
        if ctx.attempt < 3:
            raise ConnectionError("payment service unavailable")
        return f"charged on attempt {ctx.attempt}"

    saga = Saga("pay").step("pay", action=flaky, compensate=ledger.record, retry=FAST)
    outcome = await (await coordinator.submit(saga, {}, gid="retry-1")).result(timeout=10)
    assert outcome.succeeded and outcome.outputs == {"pay": "charged on attempt 3"}
    assert ledger.count("pay.action") == 3
    _, ops = await coordinator.get("retry-1")
    action = next(o for o in ops if o.op == "action")
    assert action.attempts == 3
    events = await coordinator.events("retry-1")
    kinds = [e.kind for e in events]
    assert kinds.count("op.unknown") == 2 and kinds.count("op.retry_scheduled") == 2
    results = [e for e in events if e.kind in ("op.unknown", "op.succeeded")]
    assert len(results) == 3 and all(e.detail["took_ms"] >= 0 for e in results)


async def test_an_attempt_past_its_timeout_is_abandoned_and_retried(
    coordinator: Coordinator,
) -> None:
    attempts: list[int] = []

    async def slow_then_fast(ctx: StepContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(5)
        return "ok"

    policy = RetryPolicy(max_attempts=3, backoff=0.01, timeout=0.2)
    saga = Saga("slow").step("s", action=slow_then_fast, retry=policy)
    started = time.monotonic()
    outcome = await (await coordinator.submit(saga, None, gid="slow-1")).result(timeout=10)
    assert outcome.succeeded and attempts == [1, 2]
    assert time.monotonic() - started < 4
    _, ops = await coordinator.get("slow-1")
    assert "timed out" in (ops[0].error or "") or ops[0].status is legato.OpStatus.SUCCEEDED


async def test_an_action_that_runs_out_of_attempts_rolls_the_saga_back(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()

    def down(ctx: StepContext) -> None:
        ledger.record(ctx)
        raise TimeoutError("car service down")

    saga = Saga("trip")
    saga.step("flight", action=ledger.record, compensate=ledger.record)
    saga.step("car", action=down, compensate=ledger.record, retry=FAST)
    outcome = await (await coordinator.submit(saga, {}, gid="exhaust-1")).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert "gave up after 4 attempts" in (outcome.reason or "")
    assert ledger.count("car.action") == 4
    assert ledger.calls[-2:] == ["car.compensate", "flight.compensate"]


async def test_configured_exception_types_are_definite_failures(coordinator: Coordinator) -> None:
    class SoldOut(Exception):
        pass

    class Declined(Exception):
        pass

    ledger = Ledger()

    def sold_out(ctx: StepContext) -> None:
        ledger.record(ctx)
        raise SoldOut("no cars left")

    def declined(ctx: StepContext) -> None:
        ledger.record(ctx)
        raise Declined("card declined")

    by_saga = Saga("a", failures=[SoldOut]).step("car", action=sold_out, retry=FAST)
    by_step = Saga("b").step("pay", action=declined, failures=[Declined], retry=FAST)
    first = await (await coordinator.submit(by_saga, {}, gid="fail-a")).result(timeout=10)
    second = await (await coordinator.submit(by_step, {}, gid="fail-b")).result(timeout=10)
    assert first.status is TxStatus.FAILED and "no cars left" in (first.reason or "")
    assert second.status is TxStatus.FAILED and "card declined" in (second.reason or "")
    assert ledger.count("car.action") == 1 and ledger.count("pay.action") == 1


async def test_timeout_to_fail_rolls_back_a_saga_that_does_not_finish_in_time(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()

    def never(ctx: StepContext) -> None:
        ledger.record(ctx)
        raise ConnectionError("hotel service unreachable")

    patient = RetryPolicy(max_attempts=1000, backoff=0.05, max_backoff=0.05)
    saga = Saga("trip")
    saga.step("flight", action=ledger.record, compensate=ledger.record)
    saga.step("hotel", action=never, compensate=ledger.record, retry=patient)
    handle = await coordinator.submit(saga, {}, gid="ttf-1", timeout_to_fail=0.5)
    outcome = await handle.result(timeout=10)
    assert outcome.status is TxStatus.FAILED and "timed out" in (outcome.reason or "")
    assert ledger.calls[-2:] == ["hotel.compensate", "flight.compensate"]


async def test_steps_read_earlier_outputs_and_a_compensation_gets_its_actions_output(
    coordinator: Coordinator,
) -> None:
    seen: dict[str, Any] = {}

    def flight(ctx: StepContext) -> dict[str, Any]:
        return {"booking": f"FL-{ctx.payload['trip']}"}

    def hotel(ctx: StepContext) -> dict[str, Any]:
        seen["hotel saw"] = dict(ctx.outputs)
        seen["key"] = ctx.idempotency_key
        return {"room": 12}

    def cancel_hotel(ctx: StepContext) -> None:
        seen["cancel got"] = ctx.output

    def car(ctx: StepContext) -> None:
        raise Failure("no cars")

    saga = Saga("trip")
    saga.step("flight", action=flight)
    saga.step("hotel", action=hotel, compensate=cancel_hotel)
    saga.step("car", action=car)
    outcome = await (await coordinator.submit(saga, {"trip": 7}, gid="out-1")).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert seen == {
        "hotel saw": {"flight": {"booking": "FL-7"}},
        "key": "out-1/hotel/action",
        "cancel got": {"room": 12},
    }


async def test_a_graph_runs_independent_steps_in_parallel_and_joins(
    coordinator: Coordinator,
) -> None:
    running: set[str] = set()
    overlap: list[set[str]] = []

    async def step(ctx: StepContext) -> str:
        running.add(ctx.step)
        overlap.append(set(running))
        await asyncio.sleep(0.05)
        running.discard(ctx.step)
        return ctx.step

    saga = Saga("trip")
    saga.step("flight", action=step, depends_on=[])
    saga.step("hotel", action=step, depends_on=[])
    saga.step("car", action=step, depends_on=[])
    saga.step("pay", action=step, depends_on=["flight", "hotel", "car"])
    outcome = await (await coordinator.submit(saga, {}, gid="graph-1")).result(timeout=10)
    assert outcome.succeeded
    assert any(s >= {"flight", "hotel", "car"} for s in overlap)
    assert {"pay"} in overlap and not any("pay" in s and len(s) > 1 for s in overlap)


async def test_after_the_pivot_a_failure_leaves_the_saga_stuck_until_an_operator_retries(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()
    broken = {"email": True}

    def email(ctx: StepContext) -> None:
        ledger.record(ctx)
        if broken["email"]:
            raise Failure("mail server refused")

    saga = Saga("order")
    saga.step("reserve", action=ledger.record, compensate=ledger.record)
    saga.step("pay", action=ledger.record, pivot=True)
    saga.step("email", action=email, retry=FAST)
    handle = await coordinator.submit(saga, {}, gid="pivot-1")
    outcome = await handle.result(timeout=10)
    assert outcome.status is TxStatus.SUBMITTED
    assert outcome.stuck and "mail server refused" in outcome.stuck
    assert ledger.count("reserve.compensate") == 0
    stuck = await coordinator.list(legato.TxQuery(stuck=True))
    assert [t.gid for t in stuck] == ["pivot-1"]

    broken["email"] = False
    await coordinator.retry("pivot-1")
    outcome = await handle.result(timeout=10)
    assert outcome.succeeded and outcome.stuck is None
    assert ledger.count("email.action") == 2


async def test_a_compensation_that_keeps_failing_marks_the_saga_stuck_with_its_reason(
    coordinator: Coordinator,
) -> None:
    broken = {"cancel": True}
    ledger = Ledger()

    def cancel(ctx: StepContext) -> None:
        ledger.record(ctx)
        if broken["cancel"]:
            raise Failure("hotel refuses to cancel")

    def car(ctx: StepContext) -> None:
        raise Failure("sold out")

    saga = Saga("trip")
    saga.step("hotel", action=ledger.record, compensate=cancel, compensate_retry=FAST)
    saga.step("car", action=car)
    handle = await coordinator.submit(saga, {}, gid="stuck-1")
    outcome = await handle.result(timeout=10)
    assert outcome.status is TxStatus.ABORTING
    assert outcome.stuck and "hotel refuses to cancel" in outcome.stuck
    assert ledger.count("hotel.compensate") == 4
    counts = await coordinator.log.counts()
    assert counts["stuck"] == 1

    broken["cancel"] = False
    await coordinator.retry("stuck-1")
    outcome = await handle.result(timeout=10)
    assert outcome.status is TxStatus.FAILED and outcome.stuck is None


async def test_an_abort_request_rolls_back_a_running_saga(coordinator: Coordinator) -> None:
    gate = asyncio.Event()
    ledger = Ledger()

    async def wait(ctx: StepContext) -> None:
        ledger.record(ctx)
        await gate.wait()

    saga = Saga("trip")
    saga.step("flight", action=ledger.record, compensate=ledger.record)
    saga.step("hotel", action=wait, compensate=ledger.record)
    handle = await coordinator.submit(saga, {}, gid="abort-1")
    while ledger.count("hotel.action") == 0:
        await asyncio.sleep(0.01)
    await coordinator.abort("abort-1")
    gate.set()
    outcome = await handle.result(timeout=10)
    assert outcome.status is TxStatus.FAILED and "aborted" in (outcome.reason or "")
    assert ledger.calls[-2:] == ["hotel.compensate", "flight.compensate"]
    with pytest.raises(legato.IllegalStateChange):
        await coordinator.abort("abort-1")


async def test_an_operator_can_force_end_a_stuck_saga(coordinator: Coordinator) -> None:
    def cancel(ctx: StepContext) -> None:
        raise Failure("cannot cancel")

    def car(ctx: StepContext) -> None:
        raise Failure("sold out")

    saga = Saga("trip")
    saga.step("hotel", action=lambda ctx: None, compensate=cancel, compensate_retry=FAST)
    saga.step("car", action=car)
    handle = await coordinator.submit(saga, {}, gid="force-1")
    assert (await handle.result(timeout=10)).stuck
    await coordinator.force_end("force-1", "failed")
    outcome = await handle.result(timeout=10)
    assert outcome.status is TxStatus.FAILED and outcome.stuck is None
    assert "by an operator" in (outcome.reason or "")


async def test_a_coordinator_that_lost_its_lease_stops_and_another_resumes_the_saga(
    log_url: str,
) -> None:
    """Fencing: once another coordinator owns the saga, the first one's writes are refused."""
    gate = threading.Event()
    ledger = Ledger()

    def hotel(ctx: StepContext) -> str:
        ledger.record(ctx)
        if ctx.attempt == 1:
            gate.wait(10)
        return f"room for {ctx.gid}"

    saga = Saga("trip")
    saga.step("flight", action=ledger.record, compensate=ledger.record)
    saga.step("hotel", action=hotel, compensate=ledger.record)
    async with Coordinator(log_url, owner="first", lease=30, recover=False) as first:
        handle = await first.submit(saga, {}, gid="fence-1")
        while ledger.count("hotel.action") == 0:
            await asyncio.sleep(0.01)
        # the first coordinator is partitioned away: its lease is backdated, as if expired
        await _expire_lease(first, "fence-1")
        async with Coordinator(log_url, owner="second", lease=30, poll_interval=0.05) as second:
            second.register(saga)
            outcome = await second.handle("fence-1").result(timeout=10)
            assert outcome.succeeded
            gate.set()  # the first one's hotel call now returns: its write must be refused
            first_outcome = await handle.result(timeout=10)
            assert first_outcome.succeeded
            tx, ops = await second.get("fence-1")
            assert tx.lease_owner is None and tx.status is TxStatus.SUCCEEDED
            hotel_op = next(o for o in ops if o.branch == "hotel" and o.op == "action")
            assert hotel_op.output == "room for fence-1" and hotel_op.attempts == 2
            kinds = [e.kind for e in await second.events("fence-1")]
            assert kinds.count("resumed") == 1


async def test_a_dead_coordinators_backlog_is_read_back_in_one_read_per_claim(
    log_url: str,
) -> None:
    """A takeover reads each claim's batch from the log at once: a read per transaction
    made every claim wait on as many round trips."""
    never = asyncio.Event()
    ledger = Ledger()

    async def hangs(ctx: StepContext) -> None:
        await never.wait()

    gids = [f"backlog-{i:02}" for i in range(40)]
    async with Coordinator(log_url, owner="dead", lease=30, recover=False) as dead:
        saga = Saga("trip").step("flight", action=hangs, compensate=ledger.record)
        for gid in gids:
            await dead.submit(saga, {}, gid=gid)
        for gid in gids:  # as if it had been killed: its leases run out
            await _expire_lease(dead, gid)

        log = legato.open_log(log_url)
        reads: list[list[str]] = []
        load_many = log.load_many

        async def counted(wanted: Any) -> Any:
            reads.append(sorted(wanted))
            return await load_many(wanted)

        log.load_many = counted  # type: ignore[method-assign]
        async with Coordinator(log, owner="heir", claim_batch=16, poll_interval=0.05) as heir:
            heir.register(
                Saga("trip").step("flight", action=ledger.record, compensate=ledger.record)
            )
            for gid in gids:
                assert (await heir.handle(gid).result(timeout=10)).succeeded
        never.set()

    assert [len(r) for r in reads[:3]] == [16, 16, 8]
    assert sorted(g for r in reads[:3] for g in r) == gids
    assert ledger.count("flight.action") == 40


async def _expire_lease(coordinator: Coordinator, gid: str) -> None:
    log: Any = coordinator.log
    if hasattr(log, "_tx"):  # the in-memory log
        log._tx[gid].lease_expires_at = 0.0
        return

    def backdate(conn: Any) -> None:
        conn.cursor().execute(
            "UPDATE legato_tx SET lease_expires_at = 0 WHERE gid = "
            + ("?" if log.backend == "sqlite" else "%s"),
            (gid,),
        )

    await log._write(backdate)


async def test_retention_deletes_ended_transactions_older_than_the_cutoff(log_url: str) -> None:
    saga = Saga("quick").step("only", action=lambda ctx: None)
    async with Coordinator(log_url, retention=0.2, poll_interval=0.05) as c:
        await (await c.submit(saga, {}, gid="old")).result(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if await c.log.load("old") is None:
                break
            await asyncio.sleep(0.05)
        assert await c.log.load("old") is None
        assert await c.log.events("old") == []


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "10", True])
async def test_a_bad_timeout_to_fail_is_refused_before_anything_is_written(
    coordinator: Coordinator, bad: Any
) -> None:
    saga = Saga("quick").step("only", action=lambda ctx: None)
    with pytest.raises(legato.DefinitionError, match="timeout_to_fail"):
        await coordinator.submit(saga, {}, gid="bad-ttf", timeout_to_fail=bad)
    assert await coordinator.log.load("bad-ttf") is None


async def test_a_saga_whose_definition_changed_is_parked_until_the_old_one_is_back(
    log_url: str,
) -> None:
    gate = threading.Event()

    def hold(ctx: StepContext) -> None:
        gate.wait(10)

    v1 = Saga("order").step("reserve", action=hold).step("ship", action=lambda ctx: None)
    v2 = Saga("order").step("reserve", action=hold).step("post", action=lambda ctx: None)
    async with Coordinator(log_url, owner="old", lease=30, recover=False) as old:
        await old.submit(v1, {}, gid="changed-1")
        await _expire_lease(old, "changed-1")  # the old coordinator is gone, as if killed
        async with Coordinator(log_url, owner="new", poll_interval=0.05) as new:
            new.register(v2)
            outcome = await new.handle("changed-1").result(timeout=10)
            assert outcome.stuck and "definition of saga 'order' changed" in outcome.stuck
        gate.set()
    async with Coordinator(log_url, owner="redeployed", poll_interval=0.05) as back:
        back.register(v1)
        await back.retry("changed-1")
        outcome = await back.handle("changed-1").result(timeout=10)
        assert outcome.succeeded and outcome.stuck is None


async def test_a_sync_step_runs_in_a_step_thread_unless_told_to_run_on_the_event_loop(
    coordinator: Coordinator,
) -> None:
    threads: dict[str, str] = {}

    def where(ctx: StepContext) -> None:
        threads[ctx.step] = threading.current_thread().name

    saga = Saga("threads")
    saga.step("threaded", action=where)
    saga.step("inline", action=where, in_thread=False)
    outcome = await (await coordinator.submit(saga, {}, gid="threads-1")).result(timeout=10)
    assert outcome.succeeded
    assert threads["threaded"].startswith("legato-step")
    assert threads["inline"] == threading.current_thread().name


def test_a_step_on_the_event_loop_cannot_have_an_attempt_timeout() -> None:
    with pytest.raises(legato.DefinitionError, match="cannot be timed out"):
        Saga("x").step(
            "s", action=lambda ctx: None, in_thread=False, retry=RetryPolicy(timeout=1.0)
        )
