"""Durable workflows end to end, on the log chosen by LEGATO_TEST_LOG (SQLite or
PostgreSQL): the journal and its replay, compensation, determinism checked, versions
and patches, durable time and signals, and bad input."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import legato
from legato import Coordinator, Failure, RetryPolicy, TxStatus

FAST = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.02)
_lock = threading.Lock()
CALLS: list[str] = []


def record(what: str) -> None:
    with _lock:
        CALLS.append(what)


def calls(tag: str) -> list[str]:
    with _lock:
        return [c.split("|", 1)[1] for c in CALLS if c.startswith(f"{tag}|")]


# -- participants: module-level, so that a compensation is found by its import path -----


def reserve(tag: str, what: str) -> dict[str, str]:
    record(f"{tag}|reserve {what}")
    if what.startswith("full"):
        raise Failure(f"{what} is sold out")
    return {"booked": what}


def cancel(tag: str, what: str) -> None:
    record(f"{tag}|cancel {what}")


async def areserve(tag: str, what: str, delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    record(f"{tag}|areserve {what}")
    return what


def flaky(tag: str) -> str:
    record(f"{tag}|flaky")
    raise ConnectionError("the service is down")


def not_json(tag: str) -> object:
    return object()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


async def settle(c: Coordinator, handle: legato.Handle, timeout: float = 15) -> legato.Outcome:
    return await handle.result(timeout=timeout)


# -- the happy path, plain control flow ---------------------------------------------------


@legato.workflow("trip")
async def trip(wf: legato.Workflow, tag: str, hotels: list[str]) -> dict[str, Any]:
    flight = await wf.step(reserve, tag, "flight", compensate=cancel)
    for hotel in hotels:
        try:
            room = await wf.step(reserve, tag, hotel, compensate=cancel)
            break
        except Failure:
            continue
    else:
        raise Failure("no hotel")
    return {"flight": flight, "room": room}


async def test_a_workflow_branches_and_loops_and_returns_its_value(
    coordinator: Coordinator, tag: str
) -> None:
    h = await coordinator.start_workflow(trip, tag, ["full-a", "b"], gid=f"trip-{tag}")
    o = await settle(coordinator, h)
    assert o.status is TxStatus.SUCCEEDED, o
    assert o.result == {"flight": {"booked": "flight"}, "room": {"booked": "b"}}
    assert calls(tag) == ["reserve flight", "reserve full-a", "reserve b"]
    _, ops = await coordinator.get(h.gid)
    journal = [(o.branch, str(o.op), str(o.status)) for o in ops if o.op == "action"]
    assert journal[:3] == [
        ("0001.reserve", "action", "succeeded"),
        ("0002.reserve", "action", "failed"),
        ("0003.reserve", "action", "succeeded"),
    ]
    # each compensation was journaled, with its arguments, before its step ran
    undo = next(o for o in ops if o.branch == "0001.reserve" and o.op == "compensate")
    assert undo.status == "pending" and undo.payload["args"] == [tag, "flight"]
    assert undo.payload["fn"].endswith(":cancel")


async def test_a_failure_out_of_the_body_undoes_what_happened_in_reverse(
    coordinator: Coordinator, tag: str
) -> None:
    h = await coordinator.start_workflow(trip, tag, ["full-a", "full-b"])
    o = await settle(coordinator, h)
    assert o.status is TxStatus.FAILED and o.reason == "no hotel"
    # the flight is undone; the sold-out hotels did not happen, so nothing undoes them
    assert calls(tag) == ["reserve flight", "reserve full-a", "reserve full-b", "cancel flight"]


async def test_starting_again_with_the_same_gid_is_idempotent_and_another_use_is_refused(
    coordinator: Coordinator, tag: str
) -> None:
    gid = f"same-{tag}"
    h1 = await coordinator.start_workflow(trip, tag, ["b"], gid=gid)
    await settle(coordinator, h1)
    h2 = await coordinator.start_workflow(trip, tag, ["b"], gid=gid)
    assert (await h2.result(timeout=5)).succeeded
    assert calls(tag).count("reserve flight") == 1
    with pytest.raises(legato.GidConflict, match="other arguments"):
        await coordinator.start_workflow(trip, tag, ["c"], gid=gid)
    with pytest.raises(legato.GidConflict, match="trip@1"):
        await coordinator.start_workflow(waits, tag, gid=gid)


# -- durable time, replay after a restart --------------------------------------------------


@legato.workflow("nap")
async def nap(wf: legato.Workflow, tag: str, seconds: float) -> list[str]:
    first = await wf.step(areserve, tag, "one")
    stamp = wf.now()
    await wf.sleep(seconds)
    assert wf.now() >= stamp
    second = await wf.step(areserve, tag, "two")
    return [first, second]


async def test_a_sleeping_workflow_holds_nothing_and_wakes_on_another_coordinator(
    log_url: str, tag: str
) -> None:
    gid = f"nap-{tag}"
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="a") as a:
        a.register(nap)
        await a.start_workflow(nap, tag, 2.0, gid=gid)
        for _ in range(100):
            tx, _ = await a.get(gid)
            if tx.lease_owner is None:
                break
            await asyncio.sleep(0.05)
        assert tx.lease_owner is None and tx.next_attempt_at is not None  # let go, due later
        assert gid not in a.engine.runners
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="b") as b:
        b.register(nap)
        o = await settle(b, b.handle(gid))
        kinds = [e.kind for e in await b.events(gid)]
    assert o.succeeded and o.result == ["one", "two"]
    # the first step was replayed from the journal, not called again
    assert calls(tag) == ["areserve one", "areserve two"]
    assert "suspended" in kinds and "resumed" in kinds


# -- signals --------------------------------------------------------------------------------


@legato.workflow("waits")
async def waits(wf: legato.Workflow, tag: str, timeout: float | None = None) -> Any:
    await wf.step(areserve, tag, "before")
    await wf.sleep(0.2)
    got = await wf.wait_for("go", timeout=timeout)
    if got is None:
        raise Failure("no go")
    await wf.step(areserve, tag, f"after {got}")
    return got


async def test_a_signal_sent_before_the_wait_is_kept_for_it(
    coordinator: Coordinator, tag: str
) -> None:
    h = await coordinator.start_workflow(waits, tag)
    assert await coordinator.signal(h.gid, "go", "yes", id="s1")
    assert not await coordinator.signal(h.gid, "go", "yes", id="s1")  # the same one: kept once
    assert await coordinator.signal(h.gid, "typo", 1, id="t1")  # a name nothing waits for
    o = await settle(coordinator, h)
    assert o.succeeded and o.result == "yes"
    assert calls(tag) == ["areserve before", "areserve after yes"]
    returned = next(e for e in await coordinator.events(h.gid) if e.kind == "wf.returned")
    assert returned.detail["unused_signals"] == ["typo#t1"]  # reported, not lost silently


async def test_a_signal_wakes_a_workflow_that_was_let_go(
    coordinator: Coordinator, tag: str
) -> None:
    h = await coordinator.start_workflow(waits, tag)
    for _ in range(100):  # waits with no timeout: let go at once
        tx, _ = await coordinator.get(h.gid)
        if tx.lease_owner is None and len(calls(tag)) == 1:
            break
        await asyncio.sleep(0.05)
    assert tx.lease_owner is None
    await coordinator.signal(h.gid, "go", {"by": "manager"})
    o = await settle(coordinator, h)
    assert o.succeeded and o.result == {"by": "manager"}


async def test_a_wait_past_its_timeout_returns_none(coordinator: Coordinator, tag: str) -> None:
    h = await coordinator.start_workflow(waits, tag, 0.3)
    o = await settle(coordinator, h)
    assert o.status is TxStatus.FAILED and o.reason == "no go"
    await asyncio.sleep(0.2)
    assert calls(tag) == ["areserve before"]  # nothing to undo: no compensation registered


async def test_a_signal_to_what_is_not_a_running_workflow_is_refused(
    coordinator: Coordinator, tag: str
) -> None:
    with pytest.raises(legato.TransactionNotFound):
        await coordinator.signal(f"nope-{tag}", "go")
    saga = legato.Saga("plain").step("a", action=lambda ctx: None)
    h = await coordinator.submit(saga, gid=f"saga-{tag}")
    with pytest.raises(legato.IllegalStateChange, match="not a workflow"):
        await coordinator.signal(h.gid, "go")
    h = await coordinator.start_workflow(trip, tag, ["b"])
    await settle(coordinator, h)
    with pytest.raises(legato.IllegalStateChange, match="ended"):
        await coordinator.signal(h.gid, "go")
    with pytest.raises(legato.PayloadError):
        await coordinator.signal(h.gid, "go", float("nan"))
    with pytest.raises(legato.DefinitionError, match="signal"):
        await coordinator.signal(h.gid, "no spaces")
    _, ops = await coordinator.get(h.gid)
    assert not [o for o in ops if o.op == "signal"]  # nothing half-written


# -- determinism, versions, patches ------------------------------------------------------


def two_steps(name: str, second: str) -> legato.WorkflowDefinition:
    @legato.workflow(name)
    async def body(wf: legato.Workflow, tag: str) -> str:
        await wf.step(areserve, tag, "a")
        await wf.sleep(1.5)
        return str(await wf.step(areserve, tag, second))

    return body


async def let_go(c: Coordinator, gid: str) -> None:
    for _ in range(100):
        tx, _ = await c.get(gid)
        if tx.lease_owner is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{gid} was not let go")


async def test_a_body_that_no_longer_matches_its_journal_stops_stuck_naming_both(
    log_url: str, tag: str
) -> None:
    gid = f"div-{tag}"
    name = f"div{tag}"
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="a") as a:
        await a.start_workflow(two_steps(name, "b"), tag, gid=gid)
        await let_go(a, gid)
    changed = two_steps(name, "c")

    @legato.workflow(name)
    async def reordered(wf: legato.Workflow, tag: str) -> str:
        await wf.step(areserve, tag, "z")  # another first step: the journal has "a"
        return "never"

    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="b") as b:
        b.register(reordered)
        o = await settle(b, b.handle(gid))
        assert o.stuck is not None and "position 1" in o.stuck, o
        assert "areserve" in o.stuck and "arguments" in o.stuck
    assert calls(tag) == ["areserve a"]  # the wrong step never ran
    # the right code deployed again, an operator's retry finishes it (a changed *later*
    # step is fine: the journal does not reach it)
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="c") as c:
        c.register(changed)
        await c.retry(gid)
        o = await settle(c, c.handle(gid))
    assert o.succeeded and o.result == "c"


def patched_body(name: str) -> legato.WorkflowDefinition:
    @legato.workflow(name)
    async def body(wf: legato.Workflow, tag: str) -> list[str]:
        out = [await wf.step(areserve, tag, "a")]
        if wf.patched("extra-step"):
            out.append(await wf.step(areserve, tag, "extra"))
        await wf.sleep(1.5)
        out.append(await wf.step(areserve, tag, "b"))
        return out

    return body


async def test_a_patch_lets_old_runs_replay_the_old_path_and_new_ones_take_the_new(
    log_url: str, tag: str
) -> None:
    name = f"patch{tag}"
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="v1") as a:
        await a.start_workflow(two_steps(name, "b"), tag, gid=f"old-{tag}")
        await let_go(a, f"old-{tag}")  # crashed, say, while asleep on v1's code
    patched = patched_body(name)
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="v1-patched") as b:
        b.register(patched)
        old = await settle(b, b.handle(f"old-{tag}"))
        new = await settle(b, await b.start_workflow(patched, tag, gid=f"new-{tag}"))
    assert old.succeeded and old.result == ["a", "b"]
    assert new.succeeded and new.result == ["a", "extra", "b"]


async def test_a_version_no_coordinator_has_waits_until_one_that_has_it_comes(
    log_url: str, tag: str
) -> None:
    name = f"ver{tag}"

    def version(v: str, second: str) -> legato.WorkflowDefinition:
        @legato.workflow(name, version=v)
        async def body(wf: legato.Workflow, tag: str) -> str:
            await wf.step(areserve, tag, f"{v}-a")
            await wf.sleep(0.5)
            return str(await wf.step(areserve, tag, f"{v}-{second}"))

        return body

    v1, v2 = version("1", "b"), version("2", "c")
    gid = f"ver-{tag}"
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="old") as a:
        await a.start_workflow(v1, tag, gid=gid)
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="new") as b:
        b.register(v2)  # a deploy without v1: it leaves the v1 run alone
        await asyncio.sleep(1.0)
        tx, _ = await b.get(gid)
        assert tx.status is TxStatus.SUBMITTED and tx.name == f"{name}@1"
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, owner="both") as c:
        c.register(v1, v2)
        o = await settle(c, c.handle(gid))
    assert o.succeeded and o.result == "1-b"


# -- compensation: scopes, pivots, giving up ---------------------------------------------


@legato.workflow("scoped")
async def scoped(wf: legato.Workflow, tag: str) -> str:
    await wf.step(reserve, tag, "a", compensate=cancel)
    mark = wf.mark()
    await wf.step(reserve, tag, "b", compensate=cancel)
    await wf.step(reserve, tag, "c", compensate=legato.call(cancel, tag, "c-by-ref"))
    await wf.compensate_since(mark)
    await wf.step(reserve, tag, "d", compensate=cancel)
    return "done"


async def test_compensate_since_undoes_a_part_in_reverse_and_goes_on(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(scoped, tag))
    assert o.succeeded and o.result == "done"
    assert calls(tag) == [
        "reserve a", "reserve b", "reserve c", "cancel c-by-ref", "cancel b", "reserve d",
    ]  # fmt: skip


@legato.workflow("pivoting")
async def pivoting(wf: legato.Workflow, tag: str) -> str:
    await wf.step(reserve, tag, "a", compensate=cancel)
    await wf.pivot()
    await wf.step(reserve, tag, "full-after-pivot", compensate=cancel)
    return "never"


async def test_past_the_pivot_a_workflow_never_rolls_back(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(pivoting, tag))
    assert o.status is TxStatus.SUBMITTED and o.stuck is not None
    assert "past the pivot" in o.stuck
    assert "cancel a" not in calls(tag)
    await coordinator.abort(o.gid)  # refused by the rules: nothing is undone
    await asyncio.sleep(0.3)
    assert "cancel a" not in calls(tag)


@legato.workflow("giving_up", retry=FAST)
async def giving_up(wf: legato.Workflow, tag: str) -> None:
    await wf.step(reserve, tag, "a", compensate=cancel)
    await wf.step(flaky, tag, compensate=legato.call(cancel, tag, "flaky"))


async def test_a_step_out_of_attempts_journals_the_rollback_then_undoes_it_too(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(giving_up, tag))
    assert o.status is TxStatus.FAILED and "gave up after 3 attempts" in (o.reason or "")
    # its outcome was unknown: it may have happened, so it is undone, then the rest
    assert calls(tag) == ["reserve a", "flaky", "flaky", "flaky", "cancel flaky", "cancel a"]
    events = await coordinator.events(o.gid)
    rolled = next(i for i, e in enumerate(events) if e.detail.get("to") == "aborting")
    first_undo = next(
        i for i, e in enumerate(events) if e.op == "compensate" and e.kind == "op.succeeded"
    )
    assert rolled < first_undo


@legato.workflow("slow_steps", timeout_to_fail=0.5)
async def slow_steps(wf: legato.Workflow, tag: str) -> None:
    await wf.step(reserve, tag, "a", compensate=cancel)
    await wf.sleep(30)


async def test_past_timeout_to_fail_it_rolls_back(coordinator: Coordinator, tag: str) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(slow_steps, tag))
    assert o.status is TxStatus.FAILED and o.reason == "timed out"
    assert calls(tag) == ["reserve a", "cancel a"]


async def test_an_operator_abort_rolls_a_waiting_workflow_back(
    coordinator: Coordinator, tag: str
) -> None:
    @legato.workflow(f"abortable{tag}")
    async def abortable(wf: legato.Workflow, tag: str) -> None:
        await wf.step(reserve, tag, "a", compensate=cancel)
        await wf.wait_for("never")

    h = await coordinator.start_workflow(abortable, tag)
    await let_go(coordinator, h.gid)
    await coordinator.abort(h.gid)
    o = await settle(coordinator, h)
    assert o.status is TxStatus.FAILED and calls(tag) == ["reserve a", "cancel a"]


# -- parallel steps --------------------------------------------------------------------------


@legato.workflow("parallel")
async def parallel(wf: legato.Workflow, tag: str) -> list[Any]:
    both = await wf.gather(wf.step(areserve, tag, "x", 0.05), wf.step(areserve, tag, "y", 0.0))
    index, first = await wf.select(
        wf.step(areserve, tag, "slow", 0.3), wf.step(areserve, tag, "quick", 0.0)
    )
    return [both, index, first]


async def test_gather_and_select_fix_positions_by_call_order_and_journal_the_winner(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(parallel, tag))
    assert o.succeeded and o.result == [["x", "y"], 1, "quick"]
    _, ops = await coordinator.get(o.gid)
    names = [o.branch for o in ops if o.op == "action"]
    assert names[:5] == ["0001.areserve", "0002.areserve", "0003.areserve", "0004.areserve",
                         "0005.@select"]  # fmt: skip


@legato.workflow("raw_task")
async def raw_task(wf: legato.Workflow, tag: str) -> None:
    async def side() -> Any:
        return await wf.step(areserve, tag, "side")

    await asyncio.create_task(side())


async def test_a_step_in_a_task_of_its_own_is_refused_clearly(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(raw_task, tag))
    assert o.stuck is not None and "task of its own" in o.stuck
    assert calls(tag) == []


# -- bad input ----------------------------------------------------------------------------


@legato.workflow("bad_output")
async def bad_output(wf: legato.Workflow, tag: str) -> None:
    await wf.step(not_json, tag)


@legato.workflow("bad_args")
async def bad_args(wf: legato.Workflow, tag: str) -> None:
    await wf.step(reserve, tag, {1, 2})


@legato.workflow("bad_return")
async def bad_return(wf: legato.Workflow, tag: str) -> object:
    return object()


@legato.workflow("local_undo")
async def local_undo(wf: legato.Workflow, tag: str) -> None:
    await wf.step(reserve, tag, "a", compensate=lambda *a: None)


async def test_bad_input_is_reported_clearly_and_nothing_half_written(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(bad_output, tag))
    assert o.status is TxStatus.FAILED and "not JSON" in (o.reason or ""), o
    o = await settle(coordinator, await coordinator.start_workflow(bad_args, tag))
    assert o.stuck is not None and "not JSON" in o.stuck and "step reserve" in o.stuck
    o = await settle(coordinator, await coordinator.start_workflow(bad_return, tag))
    assert o.stuck is not None and "return value" in o.stuck
    o = await settle(coordinator, await coordinator.start_workflow(local_undo, tag))
    assert o.stuck is not None and "module-level function" in o.stuck
    assert calls(tag) == []  # no step ran whose compensation could not be kept
    with pytest.raises(legato.PayloadError):
        await coordinator.start_workflow(trip, tag, {"x": float("inf")})
    with pytest.raises(legato.WorkflowError, match="start_workflow"):
        trip(None, tag, [])
    with pytest.raises(legato.DefinitionError, match="async def"):
        legato.workflow("sync")(lambda wf: None)  # type: ignore[arg-type]


async def test_a_step_called_outside_a_workflow_is_refused() -> None:
    with pytest.raises(legato.WorkflowError, match="workflow step"):
        legato.current_step()


@pytest.fixture
async def fresh(log_url: str) -> AsyncIterator[Coordinator]:
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1) as c:
        yield c


async def test_many_workflows_at_once_each_end_as_their_journal_says(
    fresh: Coordinator, tag: str
) -> None:
    t0 = time.monotonic()
    handles = [
        await fresh.start_workflow(trip, f"{tag}{i}", ["full", "b"] if i % 2 else ["full"])
        for i in range(40)
    ]
    outcomes = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert [o.status for o in outcomes] == [
        TxStatus.SUCCEEDED if i % 2 else TxStatus.FAILED for i in range(40)
    ]
    assert time.monotonic() - t0 < 30


# -- every kind of step: TCC branches, child workflows, child sagas ----------------------


def try_(tag: str, what: str) -> str:
    record(f"{tag}|try {what}")
    if what.startswith("full"):
        raise Failure(f"{what}: no seats")
    return what


def confirm(tag: str, what: str) -> None:
    record(f"{tag}|confirm {what}")


def cancel_try(tag: str, what: str) -> None:
    record(f"{tag}|cancel {what}")


@legato.workflow("tccs")
async def tccs(wf: legato.Workflow, tag: str, second: str) -> str:
    await wf.tcc(try_, confirm, cancel_try, tag, "a")
    await wf.tcc(try_, confirm, cancel_try, tag, second)
    await wf.step(reserve, tag, "after")
    return "ok"


async def test_tcc_branches_confirm_once_the_workflow_has_succeeded_or_cancel_on_rollback(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(tccs, tag, "b"))
    assert o.succeeded
    got = calls(tag)
    assert got[:3] == ["try a", "try b", "reserve after"]
    assert sorted(got[3:]) == ["confirm a", "confirm b"]  # confirmed together, at the end
    tag2 = f"{tag}x"
    o = await settle(coordinator, await coordinator.start_workflow(tccs, tag2, "full"))
    assert o.status is TxStatus.FAILED
    assert calls(tag2) == ["try a", "try full", "cancel a"]  # no confirm after a rollback


@legato.workflow("inner")
async def inner(wf: legato.Workflow, tag: str, fail: bool) -> str:
    await wf.step(reserve, tag, "inner-1", compensate=cancel)
    await wf.step(reserve, tag, "inner-2", compensate=cancel)
    if fail:
        raise Failure("inner gave up")
    return "inner ok"


@legato.workflow("outer")
async def outer(wf: legato.Workflow, tag: str, fail_inner: bool, fail_after: bool) -> str:
    await wf.step(reserve, tag, "outer-1", compensate=cancel)
    try:
        got = await wf.child(inner, tag, fail_inner)
    except Failure as exc:
        got = f"caught: {exc}"
    if fail_after:
        raise Failure("outer gave up")
    return str(got)


async def test_a_child_workflow_is_journaled_in_its_parent_and_undone_with_it(
    coordinator: Coordinator, tag: str
) -> None:
    o = await settle(coordinator, await coordinator.start_workflow(outer, tag, False, False))
    assert o.succeeded and o.result == "inner ok"
    a = f"{tag}a"
    o = await settle(coordinator, await coordinator.start_workflow(outer, a, True, False))
    # the child's failure undid the child's steps, in reverse; the parent went on
    assert o.succeeded and o.result == "caught: inner gave up"
    assert calls(a) == [
        "reserve outer-1", "reserve inner-1", "reserve inner-2", "cancel inner-2", "cancel inner-1",
    ]  # fmt: skip
    b = f"{tag}b"
    o = await settle(coordinator, await coordinator.start_workflow(outer, b, False, True))
    # the parent's failure undoes the child's steps too
    assert o.status is TxStatus.FAILED
    assert calls(b)[3:] == ["cancel inner-2", "cancel inner-1", "cancel outer-1"]


def saga_step(ctx: legato.StepContext) -> str:
    record(f"{ctx.payload['tag']}|saga {ctx.step}")
    if ctx.payload.get("fail") and ctx.step == "second":
        raise Failure("second refused")
    return ctx.step


def saga_undo(ctx: legato.StepContext) -> None:
    record(f"{ctx.payload['tag']}|saga undo {ctx.step}")


CHILD_SAGA = (
    legato.Saga("child_saga")
    .step("first", action=saga_step, compensate=saga_undo)
    .step("second", action=saga_step, compensate=saga_undo)
)


@legato.workflow("with_saga")
async def with_saga(wf: legato.Workflow, tag: str, fail: bool) -> Any:
    try:
        out = await wf.saga(CHILD_SAGA, {"tag": tag, "fail": fail})
    except Failure as exc:
        return f"caught: {exc}"
    return out


async def test_a_saga_as_a_step_is_its_own_transaction_the_workflow_waits_for(
    coordinator: Coordinator, tag: str
) -> None:
    h = await coordinator.start_workflow(with_saga, tag, False, gid=f"ws-{tag}")
    o = await settle(coordinator, h)
    assert o.succeeded and o.result == {"first": "first", "second": "second"}
    child, _ = await coordinator.get(f"ws-{tag}.1")
    assert child.mode == "saga" and child.status is TxStatus.SUCCEEDED
    h = await coordinator.start_workflow(with_saga, f"{tag}f", True)
    o = await settle(coordinator, h)
    assert o.succeeded and "second refused" in o.result
    assert calls(f"{tag}f")[-1] == "saga undo first"  # the saga compensated itself
