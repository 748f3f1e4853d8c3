"""The workflow mode's rules, as a pure machine: events in, state and commands out."""

from __future__ import annotations

from legato._model import OpName, OpStatus, RetryPolicy, TxStatus
from legato.modes import workflow as m
from legato.modes._core import (
    AbortRequested,
    OpFailed,
    OpSucceeded,
    OpUnknown,
    Resume,
    RetryDue,
    RunOp,
    TxState,
    Wake,
)

A, C = OpName.ACTION, OpName.COMPENSATE
PLAN = m.WorkflowPlan(default_action=RetryPolicy(max_attempts=2, backoff=1, jitter=0))


def feed(state: TxState, *events: object) -> tuple[TxState, list[object]]:
    commands: list[object] = []
    for e in events:
        t = m.apply(PLAN, state, e)  # type: ignore[arg-type]
        state = t.state
        commands.extend(t.commands)
    return state, commands


def booked(*names: str) -> TxState:
    """Steps called and succeeded, in order, each with a compensation."""
    s = m.new_state("g")
    for i, name in enumerate(names, 1):
        b = m.branch(i, name)
        s, _ = feed(s, m.StepCalled(1, b, True), OpSucceeded((b, A), 1, 2, name))
    return s


def test_a_step_called_is_journaled_with_its_compensation_pending_and_started() -> None:
    s, cmds = feed(m.new_state("g"), m.StepCalled(1, "0001.book", True))
    assert s.ops[("0001.book", A)].status is OpStatus.RUNNING
    assert s.ops[("0001.book", C)].status is OpStatus.PENDING
    assert cmds == [RunOp(("0001.book", A), 1, None)]


def test_a_failure_out_of_the_body_undoes_the_steps_one_at_a_time_in_reverse() -> None:
    s = booked("a", "b", "c")
    s, cmds = feed(s, m.BodyFailed(5, "no hotel"))
    assert s.status is TxStatus.ABORTING and s.reason == "no hotel"
    assert cmds == [RunOp(("0003.c", C), 1, None)]
    s, cmds = feed(s, OpSucceeded(("0003.c", C), 1, 6))
    assert cmds == [RunOp(("0002.b", C), 1, None)]
    s, cmds = feed(s, OpSucceeded(("0002.b", C), 1, 7))
    s, cmds = feed(s, OpSucceeded(("0001.a", C), 1, 8))
    assert s.status is TxStatus.FAILED and cmds == []


def test_a_definite_failure_is_the_bodys_to_handle_and_is_never_undone() -> None:
    s = booked("a")
    s, _ = feed(s, m.StepCalled(3, "0002.full", True), OpFailed(("0002.full", A), 1, 4, "sold"))
    assert s.status is TxStatus.SUBMITTED and s.ops[("0002.full", A)].status is OpStatus.FAILED
    s, cmds = feed(s, m.BodyFailed(5, "no hotel"))
    assert cmds == [RunOp(("0001.a", C), 1, None)]


def test_a_step_out_of_attempts_rolls_back_and_is_undone_first() -> None:
    s = booked("a")
    b = "0002.pay"
    s, cmds = feed(s, m.StepCalled(3, b, True), OpUnknown((b, A), 1, 4, "down"))
    assert cmds[-1] == Wake((b, A), 1, 5.0)
    s, cmds = feed(s, RetryDue((b, A), 1, 5), OpUnknown((b, A), 2, 6, "down"))
    assert s.status is TxStatus.ABORTING and "gave up after 2 attempts" in (s.reason or "")
    assert cmds[-1] == RunOp((b, C), 1, None)


def test_after_a_restart_a_step_in_flight_waits_for_the_body_to_reach_it() -> None:
    s, _ = feed(m.new_state("g"), m.StepCalled(1, "0001.a", True))
    s, cmds = feed(s, Resume(10))
    a = s.ops[("0001.a", A)]
    assert a.status is OpStatus.RETRY_WAIT and a.next_at is None and cmds == []
    s, cmds = feed(s, m.StepReached(11, "0001.a"))
    assert cmds == [RunOp(("0001.a", A), 2, None)]


def test_past_the_pivot_there_is_no_rollback() -> None:
    s = booked("a")
    s, _ = feed(s, m.Recorded(3, "0002.@pivot", True), m.StepCalled(4, "0003.b", True))
    s, cmds = feed(s, OpFailed(("0003.b", A), 1, 5, "refused"))
    assert s.status is TxStatus.SUBMITTED and s.stuck is not None and cmds == []
    t = m.apply(PLAN, s, AbortRequested(6, "stop"))
    assert not t.changed


def test_a_wait_ends_on_its_signal_or_its_time() -> None:
    s, cmds = feed(m.new_state("g"), m.Waiting(1, "0001.@wait", 100.0))
    assert cmds == [Wake(("0001.@wait", A), 0, 100.0)]
    signalled, _ = feed(s, m.Delivered(2, "0001.@wait", {"signal": "go#1", "value": 3}))
    assert signalled.ops[("0001.@wait", A)].output == {"signal": "go#1", "value": 3}
    timed_out, _ = feed(s, RetryDue(("0001.@wait", A), 0, 100))
    assert timed_out.ops[("0001.@wait", A)].output == {"timeout": True}
    late, _ = feed(signalled, RetryDue(("0001.@wait", A), 0, 100))
    assert late.ops[("0001.@wait", A)].output == {"signal": "go#1", "value": 3}


def test_the_workflow_succeeds_once_the_body_returned_and_nothing_is_in_flight() -> None:
    s, _ = feed(booked("a"), m.StepCalled(3, "0002.b", False))
    s, _ = feed(s, m.BodyReturned(4, "ok"))
    assert s.status is TxStatus.SUBMITTED
    s, _ = feed(s, OpSucceeded(("0002.b", A), 1, 5))
    assert s.status is TxStatus.SUCCEEDED and s.ops[(m.RESULT, A)].output == "ok"


def test_compensate_since_undoes_only_what_came_after_the_mark() -> None:
    s = booked("a", "b", "c")
    s, cmds = feed(s, m.UndoSince(5, "0004.@undo", 1))
    assert cmds == [RunOp(("0003.c", C), 1, None)]
    s, cmds = feed(s, OpSucceeded(("0003.c", C), 1, 6))
    assert cmds == [RunOp(("0002.b", C), 1, None)]
    s, _ = feed(s, OpSucceeded(("0002.b", C), 1, 7))
    assert s.ops[("0004.@undo", A)].status is OpStatus.SUCCEEDED
    assert s.ops[("0001.a", C)].status is OpStatus.PENDING and s.status is TxStatus.SUBMITTED
