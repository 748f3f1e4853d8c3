"""``Coordinator.close(grace)``: the ops in flight finish and are written, no new op
starts, new work is refused, and every lease goes at once for another coordinator;
on the log chosen by LEGATO_TEST_LOG."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from legato import Coordinator, RetryPolicy, Saga, StepContext, Stopping, TxStatus
from legato._model import OpName, OpStatus

FAST = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.02)


class Calls:
    """Each op's calls: (step, op, who ran it, start, end), thread-safely."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, float, float]] = []
        self.lock = threading.Lock()
        self.started = threading.Event()

    def step(self, seconds: float, who: str):  # type: ignore[no-untyped-def]
        async def run(ctx: StepContext) -> str:
            start = time.monotonic()
            self.started.set()
            await asyncio.sleep(seconds)
            with self.lock:
                self.rows.append((ctx.step, str(ctx.op), who, start, time.monotonic()))
            return f"{ctx.step} by {who}"

        return run

    def by(self, step: str) -> list[str]:
        with self.lock:
            return [r[2] for r in self.rows if r[0] == step and r[1] == "action"]


def trip(calls: Calls, who: str, slow: float = 0.6) -> Saga:
    saga = Saga("trip")
    saga.step("flight", action=calls.step(slow, who), retry=FAST)
    saga.step("hotel", action=calls.step(0.01, who), retry=FAST)
    return saga


async def test_close_lets_the_op_in_flight_finish_and_hands_the_rest_over_at_once(
    log_url: str,
) -> None:
    calls = Calls()
    async with Coordinator(log_url, owner="heir", lease=30, poll_interval=0.05) as heir:
        heir.register(trip(calls, "heir"))
        leaving = Coordinator(log_url, owner="leaving", lease=30, recover=False)
        await leaving.start()
        handle = await leaving.submit(trip(calls, "leaving"), {}, gid="grace-1")
        while not calls.started.is_set():
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await leaving.close(grace=10)
        closed = time.monotonic()
        assert closed - began < 2  # the flight's 0.6 s, not the grace
        outcome = await heir.handle("grace-1").result(timeout=10)
        taken_over = time.monotonic()
    assert outcome.succeeded
    # the flight ran once, by the one leaving, and its outcome was kept: the heir only
    # booked the hotel, which the one leaving never started (not a lost attempt)
    assert calls.by("flight") == ["leaving"] and calls.by("hotel") == ["heir"]
    assert taken_over - closed < 1.5  # at once, not after the 30 s lease
    async with Coordinator(log_url, recover=False) as reader:
        _, ops = await reader.get("grace-1")
        events = await reader.events("grace-1")
    hotel = next(o for o in ops if o.branch == "hotel" and o.op is OpName.ACTION)
    assert hotel.attempts == 1
    assert not any(e.kind == "op.unknown" for e in events)
    assert handle.gid == outcome.gid


async def test_a_closing_coordinator_refuses_new_work_and_the_grace_bounds_the_wait(
    log_url: str,
) -> None:
    calls = Calls()
    c = Coordinator(log_url, owner="slow", lease=30, recover=False)
    await c.start()
    await c.submit(trip(calls, "slow", slow=30), {}, gid="grace-2")
    while not calls.started.is_set():
        await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(c.close(grace=0.5))
    await asyncio.sleep(0.05)
    assert c.stopping
    with pytest.raises(Stopping):
        await c.submit(trip(calls, "slow"), {}, gid="grace-3")
    began = time.monotonic()
    await closing
    assert time.monotonic() - began < 2  # the grace ran out: the flight was cut
    async with Coordinator(log_url, owner="reader", recover=False) as reader:
        tx, ops = await reader.get("grace-2")
        flight = next(o for o in ops if o.branch == "flight" and o.op is OpName.ACTION)
        assert flight.status is OpStatus.RUNNING  # cut mid-call: the next owner retries it
        assert tx.lease_owner is None and tx.status is TxStatus.SUBMITTED
        with pytest.raises(Exception, match="no transaction"):
            await reader.get("grace-3")


async def test_begin_stop_again_with_no_grace_cuts_a_graceful_close_short(log_url: str) -> None:
    calls = Calls()
    c = Coordinator(log_url, owner="hurried", lease=30, recover=False)
    await c.start()
    await c.submit(trip(calls, "hurried", slow=30), {}, gid="grace-4")
    while not calls.started.is_set():
        await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(c.close(grace=60))
    await asyncio.sleep(0.2)
    assert not closing.done()
    began = time.monotonic()
    c.begin_stop(0)  # a second SIGTERM
    await asyncio.wait_for(closing, 5)
    assert time.monotonic() - began < 2
