"""The pure msg machine (DESIGN section 4, msg): submit delivers (one branch at a time,
in order, or all at once when concurrent), abort drops, a timeout asks the initiator's
query_prepared, and deliveries are never given up silently."""

from __future__ import annotations

import itertools

import pytest

from legato import RetryPolicy
from legato._model import OpKey, OpName, OpStatus, TxStatus
from legato.modes._core import (
    AbortRequested,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpSucceeded,
    OpUnknown,
    Resume,
    RetryDue,
    RunOp,
    Submit,
    Timeout,
    TxState,
    Wake,
)
from legato.modes.msg import QUERY, MsgPlan, apply, new_state

A = OpName.ACTION
FEW = RetryPolicy(max_attempts=2, backoff=1.0, jitter=0.0, ongoing_interval=0.5)
PLAN = MsgPlan(("01", "02"), has_query=True, deliver_retry=FEW, query_retry=FEW)
CONCURRENT = MsgPlan(
    ("01", "02"), has_query=True, concurrent=True, deliver_retry=FEW, query_retry=FEW
)


def feed(state: TxState, *events: object, plan: MsgPlan = PLAN) -> tuple[TxState, list[object]]:
    commands: list[object] = []
    for e in events:
        t = apply(plan, state, e)  # type: ignore[arg-type]
        state = t.state
        commands += t.commands
    return state, commands


def runs(commands: list[object]) -> list[OpKey]:
    return [c.key for c in commands if isinstance(c, RunOp)]


def test_submit_delivers_the_branches_one_at_a_time_in_order() -> None:
    s, cmds = feed(new_state("g", PLAN), Submit(1.0))
    assert s.status is TxStatus.SUBMITTED and runs(cmds) == [("01", A)]
    s, cmds = feed(s, OpSucceeded(("01", A), 1, 2.0))
    assert runs(cmds) == [("02", A)] and s.status is TxStatus.SUBMITTED
    s, cmds = feed(s, OpSucceeded(("02", A), 1, 3.0))
    assert s.status is TxStatus.SUCCEEDED and runs(cmds) == []


def test_a_failing_branch_holds_back_the_ones_after_it_and_nothing_is_undone() -> None:
    s, _ = feed(new_state("g", PLAN), Submit(1.0))
    for attempt, now in ((1, 2.0), (2, 4.0)):
        s, cmds = feed(s, OpFailed(("01", A), attempt, now, "409 FAILURE"))
        assert runs(cmds) == [] and s.ops[("02", A)].status is OpStatus.PENDING
        if attempt == 1:
            s, cmds = feed(s, RetryDue(("01", A), 1, 3.0))
            assert runs(cmds) == [("01", A)]  # the same branch again, forward
    assert s.stuck is not None and s.status is TxStatus.SUBMITTED
    s, cmds = feed(s, OperatorRetry(5.0))
    assert runs(cmds) == [("01", A)]
    s, cmds = feed(s, OpSucceeded(("01", A), 3, 6.0))
    assert runs(cmds) == [("02", A)]


def test_a_concurrent_message_delivers_every_branch_at_once() -> None:
    s, cmds = feed(new_state("g", CONCURRENT), Submit(1.0), plan=CONCURRENT)
    assert s.status is TxStatus.SUBMITTED and runs(cmds) == [("01", A), ("02", A)]
    s, cmds = feed(s, OpFailed(("02", A), 1, 1.5, "409"), plan=CONCURRENT)
    assert s.ops[("01", A)].status is OpStatus.RUNNING and runs(cmds) == []
    s, _ = feed(
        s,
        OpSucceeded(("01", A), 1, 2.0),
        RetryDue(("02", A), 1, 2.5),
        OpSucceeded(("02", A), 2, 3.0),
        plan=CONCURRENT,
    )
    assert s.status is TxStatus.SUCCEEDED


def test_an_abort_while_prepared_fails_at_once_and_delivers_nothing() -> None:
    s, cmds = feed(new_state("g", PLAN), AbortRequested(1.0, "local transaction failed"))
    assert (s.status, s.reason, cmds) == (TxStatus.FAILED, "local transaction failed", [])
    s, cmds = feed(s, Submit(2.0))
    assert s.status is TxStatus.FAILED and cmds == []


def test_a_timeout_asks_query_prepared_and_a_commit_there_delivers() -> None:
    s, cmds = feed(new_state("g", PLAN), Timeout(5.0))
    assert s.status is TxStatus.PREPARED and runs(cmds) == [QUERY]
    s, cmds = feed(s, Timeout(6.0))  # asking already: nothing more
    assert cmds == []
    s, cmds = feed(s, OpSucceeded(QUERY, 1, 7.0))
    assert s.status is TxStatus.SUBMITTED and runs(cmds) == [("01", A)]


def test_a_rollback_told_by_query_prepared_fails_the_message() -> None:
    s, _ = feed(new_state("g", PLAN), Timeout(5.0))
    s, cmds = feed(s, OpFailed(QUERY, 1, 6.0, "rolled back"))
    assert s.status is TxStatus.FAILED and "rolled back" in (s.reason or "")
    assert cmds == []


def test_a_query_with_no_answer_or_not_yet_is_asked_again() -> None:
    s, _ = feed(new_state("g", PLAN), Timeout(5.0))
    s, cmds = feed(s, OpOngoing(QUERY, 1, 6.0, "in flight"))
    assert [c for c in cmds if isinstance(c, Wake)] and s.status is TxStatus.PREPARED
    s, cmds = feed(s, RetryDue(QUERY, 1, 6.5))
    assert runs(cmds) == [QUERY]
    s, cmds = feed(s, OpUnknown(QUERY, 2, 7.0, "timeout"))
    assert s.ops[QUERY].status is OpStatus.RETRY_WAIT


def test_a_submit_while_asking_wins_and_the_late_answer_changes_nothing() -> None:
    s, _ = feed(new_state("g", PLAN), Timeout(5.0), Submit(6.0))
    assert s.status is TxStatus.SUBMITTED
    s, cmds = feed(s, OpFailed(QUERY, 1, 7.0, "rolled back"))
    assert s.status is TxStatus.SUBMITTED and cmds == []


def test_without_a_query_a_timeout_fails_the_message() -> None:
    plan = MsgPlan(("01",), has_query=False)
    s, cmds = feed(new_state("g", plan), Timeout(5.0), plan=plan)
    assert s.status is TxStatus.FAILED and cmds == []


def test_a_failing_delivery_is_retried_then_parked_stuck_and_an_operator_retry_resumes_it() -> None:
    p = CONCURRENT
    s, _ = feed(new_state("g", p), Submit(1.0), OpSucceeded(("02", A), 1, 1.5), plan=p)
    s, cmds = feed(s, OpFailed(("01", A), 1, 2.0, "409"), plan=p)
    assert s.status is TxStatus.SUBMITTED and s.stuck is None
    s, _ = feed(s, RetryDue(("01", A), 1, 2.5), OpFailed(("01", A), 2, 3.0, "409"), plan=p)
    assert s.stuck is not None and s.status is TxStatus.SUBMITTED  # never failed
    s, cmds = feed(s, OperatorRetry(4.0), plan=p)
    assert runs(cmds) == [("01", A)] and s.stuck is None
    s, _ = feed(s, OpSucceeded(("01", A), 3, 5.0), plan=p)
    assert s.status is TxStatus.SUCCEEDED


@pytest.mark.parametrize("plan", [PLAN, CONCURRENT], ids=["in order", "concurrent"])
def test_a_restart_loses_running_ops_to_a_retry_and_rearms_timers(plan: MsgPlan) -> None:
    s, _ = feed(new_state("g", plan), Submit(1.0), plan=plan)
    s, cmds = feed(s, Resume(10.0), plan=plan)
    running = [("01", A), ("02", A)] if plan.concurrent else [("01", A)]
    assert all(s.ops[k].status is OpStatus.RETRY_WAIT for k in running)
    assert len([c for c in cmds if isinstance(c, Wake)]) == len(running)
    assert runs(cmds) == []  # nothing after a branch waiting to retry starts


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.product(["submit", "abort", "timeout"], repeat=2)),
)
def test_any_two_initiator_or_timer_events_end_in_a_consistent_state(
    first: str, second: str
) -> None:
    make = {
        "submit": lambda t: Submit(t),
        "abort": lambda t: AbortRequested(t, "no"),
        "timeout": lambda t: Timeout(t),
    }
    s, _ = feed(new_state("g", PLAN), make[first](1.0), make[second](2.0))
    delivering = s.ops[("01", A)].status is not OpStatus.PENDING
    assert (s.status is TxStatus.SUBMITTED) == delivering
    if s.status is TxStatus.FAILED:
        assert all(s.ops[(b, A)].status is OpStatus.PENDING for b in PLAN.branches)


def test_force_end_ends_it_and_nothing_after_changes_it() -> None:
    s, _ = feed(new_state("g", PLAN), ForceEnd(1.0, TxStatus.FAILED, "operator"))
    assert s.status is TxStatus.FAILED
    s, cmds = feed(s, Submit(2.0), Timeout(3.0))
    assert s.status is TxStatus.FAILED and cmds == []
