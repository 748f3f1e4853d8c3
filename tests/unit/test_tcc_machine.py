"""The pure TCC machine (DESIGN section 4, TCC), one rule at a time, then every
status and event pair."""

from __future__ import annotations

from dataclasses import replace

import pytest

from legato import RetryPolicy
from legato._model import OpKey, OpName, OpStatus, TxStatus
from legato.modes._core import (
    AbortRequested,
    Event,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpState,
    OpSucceeded,
    OpUnknown,
    Resume,
    RetryDue,
    RunOp,
    Submit,
    Timeout,
    Transition,
    TxState,
    Wake,
)
from legato.modes.tcc import BranchPlan, apply, new_state, plan

CONFIRM, CANCEL = OpName.CONFIRM, OpName.CANCEL
FEW = RetryPolicy(max_attempts=2, backoff=1.0, jitter=0.0, ongoing_interval=0.5)
PLAN = BranchPlan(
    ("01", "02", "03"), forward=CONFIRM, undo=CANCEL, forward_retry=FEW, undo_retry=FEW
)


class Run:
    def __init__(self, plan: BranchPlan = PLAN) -> None:
        self.plan = plan
        self.state = new_state("g", plan)
        self.now = 100.0

    def feed(self, event: Event) -> Transition:
        t = apply(self.plan, self.state, event)
        self.state = t.state
        return t

    def tick(self) -> float:
        self.now += 1
        return self.now

    def attempt(self, key: OpKey) -> int:
        return self.state.ops[key].attempts

    def ok(self, branch: str, op: OpName) -> Transition:
        key = (branch, op)
        return self.feed(OpSucceeded(key, self.attempt(key), self.tick()))

    def fail(self, branch: str, op: OpName) -> Transition:
        key = (branch, op)
        return self.feed(OpFailed(key, self.attempt(key), self.tick(), "no"))

    def due(self, branch: str, op: OpName) -> Transition:
        key = (branch, op)
        return self.feed(RetryDue(key, self.attempt(key), self.tick()))

    def running(self) -> list[OpKey]:
        return [k for k, s in self.state.ops.items() if s.status is OpStatus.RUNNING]


def started(t: Transition) -> list[OpKey]:
    return [c.key for c in t.commands if isinstance(c, RunOp)]


def test_a_prepared_transaction_waits_for_its_initiator() -> None:
    run = Run()
    t = run.feed(Resume(run.tick(), fresh=True))
    assert t.commands == ()
    assert run.state.status is TxStatus.PREPARED


def test_submit_confirms_every_branch_at_once_and_succeeds_when_all_have() -> None:
    run = Run()
    t = run.feed(Submit(run.tick()))
    assert run.state.status is TxStatus.SUBMITTED
    assert started(t) == [("01", CONFIRM), ("02", CONFIRM), ("03", CONFIRM)]
    for b in ("02", "01", "03"):
        run.ok(b, CONFIRM)
    assert run.state.status is TxStatus.SUCCEEDED
    assert all(s.status is OpStatus.PENDING for k, s in run.state.ops.items() if k[1] is CANCEL)


def test_abort_cancels_the_branches_one_at_a_time_newest_first() -> None:
    run = Run()
    t = run.feed(AbortRequested(run.tick(), "a try failed"))
    assert run.state.status is TxStatus.ABORTING
    assert run.state.reason == "a try failed"
    assert started(t) == [("03", CANCEL)]
    assert started(run.ok("03", CANCEL)) == [("02", CANCEL)]
    assert started(run.ok("02", CANCEL)) == [("01", CANCEL)]
    run.ok("01", CANCEL)
    assert run.state.status is TxStatus.FAILED


def test_a_transaction_left_prepared_past_its_timeout_is_cancelled() -> None:
    run = Run()
    t = run.feed(Timeout(run.tick()))
    assert run.state.status is TxStatus.ABORTING
    assert run.state.reason == "timed out (timeout_to_fail)"
    assert started(t) == [("03", CANCEL)]


@pytest.mark.parametrize("late", [AbortRequested(1.0), Timeout(1.0)])
def test_once_submitted_it_only_goes_forward(late: Event) -> None:
    run = Run()
    run.feed(Submit(run.tick()))
    t = run.feed(late)
    assert not t.changed
    assert run.state.status is TxStatus.SUBMITTED


def test_a_confirm_answering_failure_is_retried_then_parked_as_stuck() -> None:
    run = Run()
    run.feed(Submit(run.tick()))
    t = run.fail("02", CONFIRM)
    assert [type(c) for c in t.commands] == [Wake]
    run.due("02", CONFIRM)
    run.fail("02", CONFIRM)
    assert run.state.stuck == "02.confirm gave up after 2 attempts: confirm failed: no"
    assert run.state.status is TxStatus.SUBMITTED
    run.ok("01", CONFIRM)
    run.ok("03", CONFIRM)
    assert run.state.status is TxStatus.SUBMITTED, "stuck, never silently done"
    t = run.feed(OperatorRetry(run.tick()))
    assert started(t) == [("02", CONFIRM)]
    assert run.state.stuck is None
    run.ok("02", CONFIRM)
    assert run.state.status is TxStatus.SUCCEEDED


def test_a_cancel_that_keeps_failing_parks_the_transaction_without_skipping_it() -> None:
    run = Run()
    run.feed(AbortRequested(run.tick()))
    run.fail("03", CANCEL)
    run.due("03", CANCEL)
    t = run.fail("03", CANCEL)
    assert run.state.stuck and "03.cancel" in run.state.stuck
    assert started(t) == [], "02 is not cancelled before 03 is"


def test_ongoing_uses_no_attempt() -> None:
    run = Run()
    run.feed(Submit(run.tick()))
    for _ in range(5):
        key = ("01", CONFIRM)
        t = run.feed(OpOngoing(key, run.attempt(key), run.tick()))
        assert t.commands == (Wake(key, run.attempt(key), run.now + 0.5),)
        run.due("01", CONFIRM)
    run.ok("01", CONFIRM)
    assert run.state.ops[("01", CONFIRM)].status is OpStatus.SUCCEEDED


def test_a_restart_retries_what_was_in_flight() -> None:
    run = Run()
    run.feed(Submit(run.tick()))
    run.ok("01", CONFIRM)
    t = run.feed(Resume(run.tick()))
    assert sorted(c.key for c in t.commands if isinstance(c, Wake)) == [
        ("02", CONFIRM),
        ("03", CONFIRM),
    ]


def test_a_transaction_without_branches_ends_at_once() -> None:
    empty = plan(())
    run = Run(empty)
    run.feed(Submit(run.tick()))
    assert run.state.status is TxStatus.SUCCEEDED
    run = Run(empty)
    run.feed(AbortRequested(run.tick()))
    assert run.state.status is TxStatus.FAILED


# -- every status and event pair ---------------------------------------------------------

VARIANTS = {
    "pending": OpState(),
    "running": OpState(OpStatus.RUNNING, attempts=1, budget=1),
    "running-last": OpState(OpStatus.RUNNING, attempts=2, budget=2),
    "retry_wait": OpState(OpStatus.RETRY_WAIT, attempts=1, budget=1, next_at=50.0, error="x"),
    "parked": OpState(OpStatus.RETRY_WAIT, attempts=2, budget=2, error="x"),
    "succeeded": OpState(OpStatus.SUCCEEDED, attempts=1, budget=1),
}


def events_for(key: OpKey) -> list[Event]:
    now = 100.0
    out: list[Event] = [Resume(now), Resume(now, fresh=True), Submit(now)]
    for attempt in (1, 2, 3):
        out += [
            OpSucceeded(key, attempt, now),
            OpFailed(key, attempt, now),
            OpUnknown(key, attempt, now),
            OpOngoing(key, attempt, now),
            RetryDue(key, attempt, now),
        ]
    out += [Timeout(now), AbortRequested(now), OperatorRetry(now)]
    out += [ForceEnd(now, s, "by hand") for s in TxStatus]
    return out


def command_matches(state: TxState, cmd: object) -> bool:
    if isinstance(cmd, RunOp):
        s = state.ops[cmd.key]
        return s.status is OpStatus.RUNNING and s.attempts == cmd.attempt
    assert isinstance(cmd, Wake)
    s = state.ops[cmd.key]
    return s.status is OpStatus.RETRY_WAIT and s.next_at == cmd.at and s.attempts == cmd.attempt


@pytest.mark.parametrize("status", list(TxStatus), ids=str)
def test_every_status_and_event_pair_gives_a_consistent_transition(status: TxStatus) -> None:
    base = new_state("g", PLAN)
    for key in PLAN.op_keys():
        for variant in VARIANTS.values():
            state = replace(base, status=status, ops={**base.ops, key: variant})
            for event in events_for(key):
                t = apply(PLAN, state, event)
                assert set(t.state.ops) == set(state.ops)
                if not t.changed:
                    assert t.state is state and t.commands == () and t.note
                if status.ended and not isinstance(event, ForceEnd):
                    assert not t.changed
                if isinstance(event, Submit) and status is not TxStatus.PREPARED:
                    assert not t.changed
                if isinstance(event, Timeout | AbortRequested) and status is not TxStatus.PREPARED:
                    assert not t.changed
                result = isinstance(event, OpSucceeded | OpFailed | OpUnknown | OpOngoing)
                current = variant.attempts == getattr(event, "attempt", None)
                if result and not (current and variant.status is OpStatus.RUNNING):
                    assert not t.changed
                # what the rules start (not the op a wake-up or an operator names)
                ruled = [k for k in started(t) if not isinstance(event, RetryDue | OperatorRetry)]
                if t.state.status is TxStatus.SUBMITTED and not status.ended:
                    assert all(k[1] is CONFIRM for k in ruled)
                if t.state.status is TxStatus.ABORTING:
                    assert all(k[1] is CANCEL for k in ruled)
                    assert len(ruled) <= 1
                for k, s in state.ops.items():
                    assert t.state.ops[k].attempts >= s.attempts
                for cmd in t.commands:
                    assert command_matches(t.state, cmd), (event, cmd)


# -- two-phase commit: the same rules with commit and rollback ----------------------------

XA = BranchPlan(("01", "02"), forward=OpName.COMMIT, undo=OpName.ROLLBACK)


def test_an_xa_decision_to_commit_commits_every_branch() -> None:
    run = Run(XA)
    t = run.feed(Submit(run.tick()))
    assert started(t) == [("01", OpName.COMMIT), ("02", OpName.COMMIT)]
    run.ok("01", OpName.COMMIT)
    run.ok("02", OpName.COMMIT)
    assert run.state.status is TxStatus.SUCCEEDED


def test_an_xa_timed_out_while_prepared_rolls_every_branch_back() -> None:
    run = Run(XA)
    t = run.feed(Timeout(run.tick()))
    assert started(t) == [("02", OpName.ROLLBACK)]
    run.ok("02", OpName.ROLLBACK)
    run.ok("01", OpName.ROLLBACK)
    assert run.state.status is TxStatus.FAILED
