"""The pure saga machine, one rule at a time (DESIGN section 4, saga).

Each test drives ``apply`` by hand the way a coordinator would: it feeds an
event, reads the commands, and answers them. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from legato import RetryPolicy, Saga
from legato._model import OpName, OpStatus, TxStatus
from legato.modes._core import (
    AbortRequested,
    Event,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpSucceeded,
    OpUnknown,
    Resume,
    RetryDue,
    RunOp,
    Timeout,
    Transition,
    TxState,
    Wake,
)
from legato.modes.saga import (
    SagaPlan,
    apply,
    new_state,
)

A = OpName.ACTION
C = OpName.COMPENSATE
NO_JITTER = RetryPolicy(max_attempts=3, backoff=1.0, max_backoff=60.0, jitter=0.0)


def noop(ctx: object) -> None:
    return None


def saga(*steps: str | tuple[str, dict[str, object]], name: str = "trip") -> SagaPlan:
    """A plan from step specs: ``"flight"`` or ``("car", {"depends_on": [...], ...})``.

    Every step is compensable unless its options say ``compensate=None``.
    """
    s = Saga(name)
    for spec in steps:
        step, options = (spec, {}) if isinstance(spec, str) else spec
        kwargs: dict[str, object] = {"compensate": noop, **options}
        s.step(step, action=noop, **kwargs)  # type: ignore[arg-type]
    return s.plan()


class Run:
    """One saga, driven by hand: feed events, answer commands."""

    def __init__(self, plan: SagaPlan, gid: str = "g1") -> None:
        self.plan = plan
        self.state = new_state(gid, plan)
        self.now = 100.0
        self.last = Transition(self.state)

    def feed(self, event: Event) -> Transition:
        self.last = apply(self.plan, self.state, event)
        self.state = self.last.state
        return self.last

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    # -- events, named after what happened ---------------------------------------------

    def start(self) -> Transition:
        return self.feed(Resume(self.tick(), fresh=True))

    def attempt(self, step: str, op: OpName) -> int:
        return self.state.op((step, op)).attempts

    def ok(self, step: str, op: OpName = A, output: object = None) -> Transition:
        return self.feed(OpSucceeded((step, op), self.attempt(step, op), self.tick(), output))

    def fail(self, step: str, op: OpName = A, error: str = "sold out") -> Transition:
        return self.feed(OpFailed((step, op), self.attempt(step, op), self.tick(), error))

    def unknown(self, step: str, op: OpName = A, error: str = "timeout") -> Transition:
        return self.feed(OpUnknown((step, op), self.attempt(step, op), self.tick(), error))

    def ongoing(self, step: str, op: OpName = A) -> Transition:
        return self.feed(OpOngoing((step, op), self.attempt(step, op), self.tick(), "not yet"))

    def due(self, step: str, op: OpName = A) -> Transition:
        return self.feed(RetryDue((step, op), self.attempt(step, op), self.tick()))

    def crash_and_resume(self) -> Transition:
        return self.feed(Resume(self.tick()))

    # -- what the saga looks like ------------------------------------------------------

    @property
    def status(self) -> TxStatus:
        return self.state.status

    def op(self, step: str, op: OpName = A) -> OpStatus:
        return self.state.op((step, op)).status

    def running(self) -> list[tuple[str, OpName]]:
        return [k for k, s in self.state.ops.items() if s.status is OpStatus.RUNNING]


def started(t: Transition) -> list[tuple[str, OpName]]:
    return [c.key for c in t.commands if isinstance(c, RunOp)]


def wakes(t: Transition) -> list[Wake]:
    return [c for c in t.commands if isinstance(c, Wake)]


def compensate_all(run: Run, expected: Sequence[str]) -> None:
    """Answer each compensation with success, checking they come one at a time in order."""
    for name in expected:
        assert run.running() == [(name, C)]
        run.ok(name, C)


# -- going forward ------------------------------------------------------------------------


def test_a_fresh_sequential_saga_starts_only_its_first_step() -> None:
    run = Run(saga("flight", "hotel", "car"))
    t = run.start()
    assert t.changed
    assert t.commands == (RunOp(("flight", A), 1, None),)
    assert run.status is TxStatus.SUBMITTED
    assert run.op("hotel") is OpStatus.PENDING


def test_each_sequential_step_starts_when_the_one_before_succeeds() -> None:
    run = Run(saga("flight", "hotel", "car"))
    run.start()
    assert started(run.ok("flight")) == [("hotel", A)]
    assert started(run.ok("hotel")) == [("car", A)]


def test_a_saga_succeeds_when_every_action_has_succeeded_and_keeps_their_outputs() -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    run.ok("flight", output={"seat": "12A"})
    t = run.ok("hotel", output="room 7")
    assert run.status is TxStatus.SUCCEEDED
    assert t.commands == ()
    assert run.state.outputs() == {"flight": {"seat": "12A"}, "hotel": "room 7"}
    assert run.op("flight", C) is OpStatus.PENDING  # nothing is undone


def test_outputs_hold_only_the_actions_that_succeeded() -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    run.ok("flight", output=1)
    assert run.state.outputs() == {"flight": 1}


def test_the_timeout_of_a_step_travels_with_its_run_command() -> None:
    run = Run(saga(("flight", {"retry": RetryPolicy(timeout=2.5)})))
    assert run.start().commands == (RunOp(("flight", A), 1, 2.5),)


def test_steps_without_dependencies_start_together_in_a_graph() -> None:
    run = Run(
        saga(
            ("flight", {"depends_on": []}),
            ("hotel", {"depends_on": []}),
            ("pay", {"depends_on": ["flight", "hotel"]}),
        )
    )
    assert started(run.start()) == [("flight", A), ("hotel", A)]


def test_a_join_waits_for_every_step_it_names() -> None:
    run = Run(
        saga(
            ("flight", {"depends_on": []}),
            ("hotel", {"depends_on": []}),
            ("pay", {"depends_on": ["flight", "hotel"]}),
        )
    )
    run.start()
    assert started(run.ok("hotel")) == []
    assert run.op("pay") is OpStatus.PENDING
    assert started(run.ok("flight")) == [("pay", A)]


def test_a_step_with_unknown_outcome_holds_back_the_steps_that_depend_on_it() -> None:
    run = Run(saga(("flight", {"depends_on": []}), ("pay", {"depends_on": ["flight"]})))
    run.start()
    run.unknown("flight")
    assert run.op("pay") is OpStatus.PENDING
    assert started(run.due("flight")) == [("flight", A)]
    assert started(run.ok("flight")) == [("pay", A)]


# -- a definite failure: compensation ---------------------------------------------------


def test_compensation_runs_in_reverse_completion_order_after_car_fails() -> None:
    run = Run(
        saga(
            ("flight", {"depends_on": []}),
            ("hotel", {"depends_on": []}),
            ("car", {"depends_on": ["flight", "hotel"]}),
        )
    )
    run.start()
    run.ok("hotel")  # completes first, although declared second
    run.ok("flight")
    t = run.fail("car", error="no cars left")
    assert run.status is TxStatus.ABORTING
    assert run.state.reason == "car failed: no cars left"
    # the failed step is compensated too: its action may have half-happened
    assert started(t) == [("car", C)]
    assert started(run.ok("car", C)) == [("flight", C)]
    assert started(run.ok("flight", C)) == [("hotel", C)]
    t = run.ok("hotel", C)
    assert t.commands == ()
    assert run.status is TxStatus.FAILED
    assert run.state.reason == "car failed: no cars left"
    assert run.state.stuck is None


def test_compensations_run_one_at_a_time() -> None:
    run = Run(saga("flight", "hotel", "car"))
    run.start()
    run.ok("flight")
    run.ok("hotel")
    run.fail("car")
    for name in ("car", "hotel", "flight"):
        assert run.running() == [(name, C)]
        run.ok(name, C)
    assert run.status is TxStatus.FAILED


def test_steps_that_never_started_are_not_compensated() -> None:
    run = Run(saga("flight", "hotel", "car"))
    run.start()
    run.fail("flight")
    compensate_all(run, ["flight"])
    assert run.status is TxStatus.FAILED
    assert run.op("hotel") is OpStatus.PENDING
    assert run.op("hotel", C) is OpStatus.PENDING
    assert run.op("car", C) is OpStatus.PENDING


def test_a_step_without_compensate_is_skipped_when_rolling_back() -> None:
    run = Run(saga("flight", ("email", {"compensate": None}), "car"))
    assert ("email", C) not in run.state.ops
    run.start()
    run.ok("flight")
    run.ok("email")
    run.fail("car")
    compensate_all(run, ["car", "flight"])
    assert run.status is TxStatus.FAILED


def test_a_failed_step_without_compensate_needs_no_undo() -> None:
    run = Run(saga("flight", ("charge", {"compensate": None})))
    run.start()
    run.ok("flight")
    assert started(run.fail("charge")) == [("flight", C)]


def test_a_saga_with_nothing_to_compensate_fails_at_once() -> None:
    run = Run(saga(("flight", {"compensate": None})))
    run.start()
    t = run.fail("flight")
    assert t.commands == ()
    assert run.status is TxStatus.FAILED


def test_a_failed_action_records_its_error() -> None:
    run = Run(saga("flight"))
    run.start()
    run.fail("flight", error="card declined")
    op = run.state.op(("flight", A))
    assert op.status is OpStatus.FAILED
    assert op.error == "card declined"
    assert op.completed == 1


# -- an unknown outcome: retry with backoff --------------------------------------------------


def test_an_unknown_outcome_waits_with_backoff_and_wakes_up_later() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    t = run.unknown("flight", error="connection reset")
    now = run.now
    op = run.state.op(("flight", A))
    assert op.status is OpStatus.RETRY_WAIT
    assert op.error == "connection reset"
    assert op.next_at == now + 1.0  # backoff * multiplier**0
    assert t.commands == (Wake(("flight", A), 1, now + 1.0),)
    assert run.status is TxStatus.SUBMITTED


def test_the_delay_before_a_retry_is_the_policys_jittered_delay_for_this_gid() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=0.5, jitter=0.5)
    run = Run(saga(("flight", {"retry": policy})), gid="order-7")
    run.start()
    (wake,) = wakes(run.unknown("flight"))
    assert wake.at == run.now + policy.delay(1, "order-7:flight:action")


def test_retry_due_runs_the_next_attempt() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    run.unknown("flight")
    t = run.due("flight")
    assert t.commands == (RunOp(("flight", A), 2, None),)
    op = run.state.op(("flight", A))
    assert (op.status, op.attempts, op.next_at) == (OpStatus.RUNNING, 2, None)


def test_the_backoff_grows_with_each_attempt() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=1.0, multiplier=3.0, jitter=0.0)
    run = Run(saga(("flight", {"retry": policy})))
    run.start()
    delays = []
    for _ in range(3):
        (wake,) = wakes(run.unknown("flight"))
        delays.append(wake.at - run.now)
        run.due("flight")
    assert delays == [1.0, 3.0, 9.0]


def test_an_action_that_uses_up_its_attempts_aborts_the_saga() -> None:
    run = Run(saga("flight", ("hotel", {"retry": NO_JITTER})))
    run.start()
    run.ok("flight")
    run.unknown("hotel")
    run.due("hotel")
    run.unknown("hotel")
    run.due("hotel")
    t = run.unknown("hotel", error="502")
    assert run.status is TxStatus.ABORTING
    assert run.state.reason == "hotel.action gave up after 3 attempts: 502"
    assert run.op("hotel") is OpStatus.FAILED
    # the step that gave up is compensated first: one of its attempts may have happened
    assert started(t) == [("hotel", C)]
    compensate_all(run, ["hotel", "flight"])
    assert run.status is TxStatus.FAILED


def test_an_action_with_one_attempt_gives_up_at_its_first_unknown_outcome() -> None:
    run = Run(saga(("flight", {"retry": RetryPolicy(max_attempts=1)})))
    run.start()
    t = run.unknown("flight")
    assert wakes(t) == []
    assert run.status is TxStatus.ABORTING


def test_a_success_after_retries_carries_on() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER}), "hotel"))
    run.start()
    run.unknown("flight")
    run.due("flight")
    assert started(run.ok("flight")) == [("hotel", A)]
    assert run.state.op(("flight", A)).attempts == 2


# -- compensations never give up silently -------------------------------------------------


def test_a_compensation_that_fails_definitively_is_retried() -> None:
    run = Run(saga(("flight", {"compensate_retry": NO_JITTER})))
    run.start()
    run.fail("flight")
    t = run.fail("flight", C, error="refund service said no")
    op = run.state.op(("flight", C))
    assert op.status is OpStatus.RETRY_WAIT
    assert op.error == "compensation failed: refund service said no"
    assert t.commands == (Wake(("flight", C), 1, run.now + 1.0),)
    assert run.status is TxStatus.ABORTING
    assert run.due("flight", C).commands == (RunOp(("flight", C), 2, None),)


def test_a_compensation_that_keeps_failing_parks_the_saga_as_stuck() -> None:
    run = Run(saga(("flight", {"compensate_retry": NO_JITTER})))
    run.start()
    run.fail("flight")
    run.fail("flight", C)
    run.due("flight", C)
    run.unknown("flight", C)
    run.due("flight", C)
    t = run.fail("flight", C, error="refund service said no")
    assert t.commands == ()
    assert run.status is TxStatus.ABORTING  # not failed: the undo is not done
    op = run.state.op(("flight", C))
    assert (op.status, op.next_at, op.attempts) == (OpStatus.RETRY_WAIT, None, 3)
    assert run.state.stuck == (
        "compensation flight.compensate gave up after 3 attempts: "
        "compensation failed: refund service said no"
    )


def test_a_compensation_with_unknown_outcomes_parks_the_saga_after_its_attempts() -> None:
    run = Run(saga(("flight", {"compensate_retry": RetryPolicy(max_attempts=2)})))
    run.start()
    run.fail("flight")
    run.unknown("flight", C)
    run.due("flight", C)
    t = run.unknown("flight", C, error="timeout")
    assert t.commands == ()
    assert run.state.stuck is not None
    assert "gave up after 2 attempts: timeout" in run.state.stuck
    assert run.state.op(("flight", C)).next_at is None


def test_a_parked_compensation_is_not_woken_by_a_late_retry_due() -> None:
    run = Run(saga(("flight", {"compensate_retry": RetryPolicy(max_attempts=1)})))
    run.start()
    run.fail("flight")
    run.fail("flight", C)
    before = run.state
    t = run.due("flight", C)
    assert not t.changed
    assert t.state is before


def test_operator_retry_unparks_a_stuck_compensation_with_a_fresh_budget() -> None:
    run = Run(saga("flight", ("hotel", {"compensate_retry": RetryPolicy(max_attempts=1)})))
    run.start()
    run.ok("flight")
    run.fail("hotel")
    run.fail("hotel", C)
    assert run.state.stuck is not None
    t = run.feed(OperatorRetry(run.tick()))
    assert t.commands == (RunOp(("hotel", C), 2, None),)
    assert run.state.stuck is None
    op = run.state.op(("hotel", C))
    assert (op.status, op.attempts, op.budget) == (OpStatus.RUNNING, 2, 1)
    compensate_all(run, ["hotel", "flight"])
    assert run.status is TxStatus.FAILED


def test_a_retried_compensation_that_fails_again_parks_again() -> None:
    run = Run(saga(("flight", {"compensate_retry": RetryPolicy(max_attempts=1)})))
    run.start()
    run.fail("flight")
    run.fail("flight", C)
    run.feed(OperatorRetry(run.tick()))
    run.fail("flight", C, error="still down")
    assert run.state.stuck is not None
    assert "still down" in run.state.stuck
    assert run.state.op(("flight", C)).attempts == 2


def test_operator_retry_of_a_saga_that_is_not_stuck_changes_nothing() -> None:
    run = Run(saga("flight"))
    run.start()
    before = run.state
    t = run.feed(OperatorRetry(run.tick()))
    assert not t.changed
    assert t.state is before
    assert t.commands == ()


# -- the pivot ------------------------------------------------------------------------------


def pivot_trip(**after: object) -> SagaPlan:
    """reserve (compensable) -> pay (the pivot) -> ship and email (forward only)."""
    return saga(
        "reserve",
        ("pay", {"pivot": True, "compensate": None}),
        ("ship", {"compensate": None, **after}),
        ("email", {"compensate": None}),
    )


def test_a_failure_after_the_pivot_parks_the_saga_instead_of_aborting() -> None:
    run = Run(pivot_trip())
    run.start()
    run.ok("reserve")
    run.ok("pay")
    t = run.fail("ship", error="warehouse closed")
    assert t.commands == ()
    assert run.status is TxStatus.SUBMITTED
    assert run.state.stuck == "after the pivot, ship.action failed: warehouse closed"
    op = run.state.op(("ship", A))
    assert (op.status, op.next_at) == (OpStatus.RETRY_WAIT, None)
    assert run.op("reserve", C) is OpStatus.PENDING  # nothing is undone


def test_a_step_after_the_pivot_that_uses_up_its_attempts_parks_the_saga() -> None:
    run = Run(pivot_trip(retry=RetryPolicy(max_attempts=2)))
    run.start()
    run.ok("reserve")
    run.ok("pay")
    run.unknown("ship")
    run.due("ship")
    t = run.unknown("ship", error="503")
    assert t.commands == ()
    assert run.status is TxStatus.SUBMITTED
    assert run.state.stuck == "after the pivot, ship.action gave up after 2 attempts: 503"


def test_operator_retry_drives_a_parked_step_after_the_pivot_to_success() -> None:
    run = Run(pivot_trip())
    run.start()
    run.ok("reserve")
    run.ok("pay")
    run.fail("ship")
    t = run.feed(OperatorRetry(run.tick()))
    assert t.commands == (RunOp(("ship", A), 2, None),)
    assert run.state.stuck is None
    run.ok("ship")
    run.ok("email")
    assert run.status is TxStatus.SUCCEEDED


def test_a_failing_pivot_aborts_the_saga() -> None:
    run = Run(pivot_trip())
    run.start()
    run.ok("reserve")
    t = run.fail("pay", error="card declined")
    assert run.status is TxStatus.ABORTING
    assert started(t) == [("reserve", C)]  # the pivot itself has no compensate here


def test_a_pivot_whose_outcome_stays_unknown_parks_the_saga_instead_of_aborting() -> None:
    """The charge may have gone through with its answer lost; it has no undo."""
    run = Run(
        saga(
            "reserve",
            ("pay", {"pivot": True, "compensate": None, "retry": RetryPolicy(max_attempts=2)}),
            ("ship", {"compensate": None}),
        )
    )
    run.start()
    run.ok("reserve")
    run.unknown("pay")
    run.due("pay")
    t = run.unknown("pay", error="reply lost")
    assert t.commands == ()
    assert run.status is TxStatus.SUBMITTED
    assert (
        run.state.stuck
        == "the pivot's outcome is unknown: pay.action gave up after 2 attempts: reply lost"
    )
    assert run.op("reserve", C) is OpStatus.PENDING  # nothing is undone behind its back
    t = run.feed(OperatorRetry(run.tick()))
    assert t.commands == (RunOp(("pay", A), 3, None),)
    run.ok("pay")
    run.ok("ship")
    assert run.status is TxStatus.SUCCEEDED


def test_a_step_before_the_pivot_that_fails_aborts_the_saga() -> None:
    run = Run(pivot_trip())
    run.start()
    run.fail("reserve")
    compensate_all(run, ["reserve"])
    assert run.status is TxStatus.FAILED


@pytest.mark.parametrize(
    "event", [Timeout(1e9), AbortRequested(1e9, "changed my mind")], ids=["timeout", "abort"]
)
def test_timeout_and_abort_are_refused_once_the_pivot_has_started(event: Event) -> None:
    run = Run(pivot_trip())
    run.start()
    run.ok("reserve")
    for advance in (lambda: None, lambda: run.unknown("pay"), lambda: run.due("pay")):
        advance()  # pay running, then waiting to retry, then running again
        before = run.state
        t = run.feed(event)
        assert not t.changed
        assert t.state is before
    run.ok("pay")
    assert not run.feed(event).changed


def test_timeout_before_the_pivot_aborts_the_saga() -> None:
    run = Run(pivot_trip())
    run.start()
    t = run.feed(Timeout(run.tick()))
    assert run.status is TxStatus.ABORTING
    assert run.state.reason == "timed out (timeout_to_fail)"
    assert t.commands == ()  # reserve is still in flight
    assert started(run.ok("reserve")) == [("reserve", C)]
    assert run.op("pay") is OpStatus.PENDING


# -- timeout and abort requests ---------------------------------------------------------------


def test_a_timeout_aborts_a_saga_without_a_pivot() -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    run.ok("flight")
    run.feed(Timeout(run.tick()))
    assert run.status is TxStatus.ABORTING
    assert run.state.reason == "timed out (timeout_to_fail)"


def test_an_abort_request_carries_its_reason() -> None:
    run = Run(saga("flight"))
    run.start()
    run.feed(AbortRequested(run.tick(), "aborted by an operator"))
    assert run.state.reason == "aborted by an operator"


def test_a_timeout_of_a_saga_that_has_not_started_anything_fails_it_at_once() -> None:
    plan = saga("flight")
    t = apply(plan, new_state("g", plan), Timeout(1.0))
    assert t.state.status is TxStatus.FAILED
    assert t.commands == ()


@pytest.mark.parametrize("event", [Timeout(1e9), AbortRequested(1e9)], ids=["timeout", "abort"])
def test_a_saga_already_aborting_refuses_another_abort(event: Event) -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    run.ok("flight")
    run.fail("hotel")
    before = run.state
    t = run.feed(event)
    assert not t.changed
    assert t.state is before


# -- in-flight actions while aborting --------------------------------------------------------


def parallel_trip() -> SagaPlan:
    return saga(
        ("flight", {"depends_on": []}),
        ("hotel", {"depends_on": []}),
        ("car", {"depends_on": []}),
    )


def test_while_aborting_actions_in_flight_are_awaited_before_any_compensation() -> None:
    run = Run(parallel_trip())
    run.start()
    t = run.fail("car")
    assert run.status is TxStatus.ABORTING
    assert t.commands == ()  # flight and hotel are still in flight
    assert run.ok("flight").commands == ()
    assert started(run.ok("hotel")) == [("hotel", C)]
    compensate_all(run, ["hotel", "flight", "car"])
    assert run.status is TxStatus.FAILED


def test_while_aborting_an_unknown_outcome_of_an_action_is_not_retried() -> None:
    run = Run(parallel_trip())
    run.start()
    run.ok("flight")
    run.fail("car")
    t = run.unknown("hotel", error="timeout")
    assert wakes(t) == []
    op = run.state.op(("hotel", A))
    assert (op.status, op.error) == (OpStatus.FAILED, "timeout")
    # it may have happened: it is compensated, first since it ended last
    assert started(t) == [("hotel", C)]


def test_while_aborting_a_definite_failure_of_an_action_in_flight_just_ends_it() -> None:
    run = Run(parallel_trip())
    run.start()
    run.fail("car")
    run.ok("flight")
    t = run.fail("hotel")
    assert run.op("hotel") is OpStatus.FAILED
    assert started(t) == [("hotel", C)]
    assert run.state.reason == "car failed: sold out"  # the first reason stays


def test_an_action_waiting_to_retry_is_abandoned_and_compensated_when_the_saga_aborts() -> None:
    run = Run(parallel_trip())
    run.start()
    run.ok("flight")
    run.unknown("hotel", error="timeout")
    t = run.fail("car")
    op = run.state.op(("hotel", A))
    assert (op.status, op.next_at, op.error) == (OpStatus.FAILED, None, "timeout")
    assert started(t) == [("hotel", C)]
    # the wake-up already scheduled for hotel now finds nothing to do
    assert not run.feed(RetryDue(("hotel", A), 1, run.tick())).changed


def test_an_action_that_never_started_is_not_started_once_the_saga_aborts() -> None:
    run = Run(
        saga(
            ("flight", {"depends_on": []}),
            ("pay", {"depends_on": ["flight"]}),
            ("car", {"depends_on": []}),
        )
    )
    run.start()
    run.fail("car")
    run.ok("flight")  # pay would be due now, but the saga is going back
    assert run.op("pay") is OpStatus.PENDING
    assert run.running() == [("flight", C)]


# -- resuming after a crash --------------------------------------------------------------------


def test_resume_after_a_crash_retries_actions_that_were_running() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    t = run.crash_and_resume()
    op = run.state.op(("flight", A))
    assert (op.status, op.attempts) == (OpStatus.RETRY_WAIT, 1)
    assert op.error == "outcome lost: coordinator restarted"
    assert t.commands == (Wake(("flight", A), 1, run.now + 1.0),)
    assert run.due("flight").commands == (RunOp(("flight", A), 2, None),)


def test_resume_after_a_crash_aborts_when_a_running_action_has_no_attempts_left() -> None:
    run = Run(saga("flight", ("hotel", {"retry": RetryPolicy(max_attempts=1)})))
    run.start()
    run.ok("flight")
    t = run.crash_and_resume()
    assert run.status is TxStatus.ABORTING
    assert started(t) == [("hotel", C)]


def test_resume_after_a_crash_while_aborting_ends_running_actions_and_compensates() -> None:
    run = Run(parallel_trip())
    run.start()
    run.fail("car")
    t = run.crash_and_resume()
    assert run.op("flight") is OpStatus.FAILED
    assert run.op("hotel") is OpStatus.FAILED
    assert wakes(t) == []
    assert len(started(t)) == 1
    assert started(t)[0][1] is C


def test_resume_after_a_crash_retries_a_running_compensation() -> None:
    run = Run(saga(("flight", {"compensate_retry": NO_JITTER})))
    run.start()
    run.fail("flight")
    t = run.crash_and_resume()
    assert t.commands == (Wake(("flight", C), 1, run.now + 1.0),)
    assert run.due("flight", C).commands == (RunOp(("flight", C), 2, None),)


def test_resume_re_emits_the_wake_up_of_ops_waiting_to_retry() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    (wake,) = wakes(run.unknown("flight"))
    t = run.crash_and_resume()
    assert t.commands == (wake,)  # same attempt, same time: the plan is in the log


def test_resume_does_not_wake_parked_ops() -> None:
    run = Run(saga(("flight", {"compensate_retry": RetryPolicy(max_attempts=1)})))
    run.start()
    run.fail("flight")
    run.fail("flight", C)
    t = run.crash_and_resume()
    assert t.commands == ()
    assert run.state.stuck is not None


def test_resume_starts_steps_that_were_due_but_not_yet_started() -> None:
    plan = saga("flight", "hotel")
    state = new_state("g", plan)  # as logged at submit, before the first step ran
    t = apply(plan, state, Resume(1.0))
    assert started(t) == [("flight", A)]


def test_resume_at_submit_treats_nothing_as_lost() -> None:
    run = Run(saga("flight"))
    run.start()
    t = run.feed(Resume(run.tick(), fresh=True))
    assert t.commands == ()
    assert run.op("flight") is OpStatus.RUNNING


def test_resume_after_a_crash_with_two_actions_in_flight_schedules_no_stale_wake_up() -> None:
    # flight is retried, then hotel (out of attempts) aborts the saga, which abandons
    # flight's retry: the wake-up planned for it in the same transition must go too
    run = Run(
        saga(
            ("flight", {"depends_on": [], "retry": NO_JITTER}),
            ("hotel", {"depends_on": [], "retry": RetryPolicy(max_attempts=1)}),
        )
    )
    run.start()
    t = run.crash_and_resume()
    assert run.status is TxStatus.ABORTING
    assert wakes(t) == []
    assert run.op("flight") is OpStatus.FAILED


def test_resume_while_another_action_waits_to_retry_and_the_saga_aborts_wakes_nothing() -> None:
    run = Run(
        saga(
            ("flight", {"depends_on": [], "retry": NO_JITTER}),
            ("hotel", {"depends_on": [], "retry": RetryPolicy(max_attempts=1)}),
            ("car", {"depends_on": [], "retry": NO_JITTER}),
        )
    )
    run.start()
    run.unknown("car")  # car waits to retry; hotel's loss at the crash aborts the saga
    t = run.crash_and_resume()
    assert run.status is TxStatus.ABORTING
    assert wakes(t) == []
    assert run.op("car") is OpStatus.FAILED


# -- the operator's last word -----------------------------------------------------------------


def test_force_end_ends_a_stuck_saga_with_the_operators_reason() -> None:
    run = Run(saga(("flight", {"compensate_retry": RetryPolicy(max_attempts=1)})))
    run.start()
    run.fail("flight")
    run.fail("flight", C)
    t = run.feed(ForceEnd(run.tick(), TxStatus.FAILED, "refunded by hand"))
    assert t.changed
    assert t.commands == ()
    assert run.status is TxStatus.FAILED
    assert run.state.reason == "refunded by hand"
    assert run.state.stuck is None


@pytest.mark.parametrize("status", [TxStatus.SUBMITTED, TxStatus.ABORTING, TxStatus.PREPARED])
def test_force_end_to_a_status_that_is_not_an_end_changes_nothing(status: TxStatus) -> None:
    run = Run(saga("flight"))
    run.start()
    before = run.state
    t = run.feed(ForceEnd(run.tick(), status, "oops"))
    assert not t.changed
    assert t.state is before


def ended_run() -> Run:
    run = Run(saga("flight", "hotel"))
    run.start()
    run.ok("flight")
    run.ok("hotel")
    assert run.status is TxStatus.SUCCEEDED
    return run


@pytest.mark.parametrize(
    "event",
    [
        Resume(1e9),
        Resume(1e9, fresh=True),
        OpSucceeded(("hotel", A), 1, 1e9),
        OpFailed(("hotel", A), 1, 1e9),
        OpUnknown(("hotel", A), 1, 1e9),
        RetryDue(("hotel", A), 1, 1e9),
        Timeout(1e9),
        AbortRequested(1e9),
        OperatorRetry(1e9),
        ForceEnd(1e9, TxStatus.FAILED, "changed my mind"),
        ForceEnd(1e9, TxStatus.SUCCEEDED, "again"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_ended_saga_ignores_every_event(event: Event) -> None:
    run = ended_run()
    before = run.state
    t = run.feed(event)
    assert not t.changed
    assert t.state is before
    assert t.commands == ()


def test_late_results_after_a_force_end_change_nothing() -> None:
    run = Run(saga("flight"))
    run.start()
    run.feed(ForceEnd(run.tick(), TxStatus.SUCCEEDED, "done by hand"))
    assert not run.ok("flight").changed
    assert run.status is TxStatus.SUCCEEDED


# -- events that arrive late or twice ---------------------------------------------------------


def test_a_result_that_arrives_twice_is_applied_once() -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    event = OpSucceeded(("flight", A), 1, run.tick(), "first")
    run.feed(event)
    before = run.state
    t = run.feed(event)
    assert not t.changed
    assert t.state is before
    assert t.commands == ()
    assert t.note == "stale result"


@pytest.mark.parametrize("late", [OpSucceeded, OpFailed, OpUnknown])
def test_a_result_for_an_attempt_that_is_no_longer_current_is_ignored(late: type) -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    run.unknown("flight")
    run.due("flight")  # attempt 2 is running now
    before = run.state
    t = run.feed(late(("flight", A), 1, run.tick()))
    assert not t.changed
    assert t.state is before


def test_a_late_success_of_an_attempt_already_declared_unknown_is_ignored() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    run.unknown("flight")
    t = run.feed(OpSucceeded(("flight", A), 1, run.tick()))
    assert not t.changed
    assert run.op("flight") is OpStatus.RETRY_WAIT


@pytest.mark.parametrize("late", [OpSucceeded, OpFailed, OpUnknown])
def test_a_result_for_an_op_that_never_started_is_ignored(late: type) -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    before = run.state
    for key in [("hotel", A), ("flight", C)]:
        t = run.feed(late(key, 0, run.tick()))
        assert not t.changed
        assert t.state is before


def test_a_result_from_a_lost_attempt_after_a_resume_is_ignored() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    run.crash_and_resume()
    t = run.feed(OpSucceeded(("flight", A), 1, run.tick()))
    assert not t.changed


@pytest.mark.parametrize("key", [("nowhere", A), ("email", C)], ids=["unknown step", "no such op"])
def test_events_for_ops_not_in_the_plan_are_ignored(key: tuple[str, OpName]) -> None:
    run = Run(saga("flight", ("email", {"compensate": None})))
    run.start()
    before = run.state
    for event in (
        OpSucceeded(key, 1, 5.0),
        OpFailed(key, 1, 5.0),
        OpUnknown(key, 1, 5.0),
        RetryDue(key, 1, 5.0),
    ):
        t = run.feed(event)
        assert not t.changed
        assert t.state is before


def test_a_retry_due_twice_starts_one_attempt() -> None:
    run = Run(saga(("flight", {"retry": NO_JITTER})))
    run.start()
    run.unknown("flight")
    event = RetryDue(("flight", A), 1, run.tick())
    assert started(run.feed(event)) == [("flight", A)]
    t = run.feed(event)
    assert not t.changed
    assert t.note == "stale wake-up"
    assert run.state.op(("flight", A)).attempts == 2


def test_a_retry_due_for_an_op_that_is_not_waiting_is_ignored() -> None:
    run = Run(saga("flight"))
    run.start()
    t = run.feed(RetryDue(("flight", A), 1, run.tick()))
    assert not t.changed


def test_apply_never_mutates_the_state_it_is_given() -> None:
    run = Run(parallel_trip())
    run.start()
    before = run.state
    snapshot = dict(before.ops)
    run.fail("car")
    assert before.ops == snapshot
    assert before.status is TxStatus.SUBMITTED


def test_a_compensation_retried_a_thousand_times_still_waits_to_retry() -> None:
    run = Run(saga(("flight", {"compensate_retry": RetryPolicy(max_attempts=5000)})))
    run.start()
    run.fail("flight")
    run.state = TxState(
        run.state.gid,
        run.state.status,
        {**run.state.ops, ("flight", C): replace(run.state.op(("flight", C)), attempts=1500)},
        run.state.reason,
    )
    assert wakes(run.unknown("flight", C))


# -- "not yet" answers (HTTP 425, ONGOING) -------------------------------------------------


def test_an_ongoing_answer_asks_again_at_the_fixed_interval_without_using_an_attempt() -> None:
    policy = RetryPolicy(max_attempts=2, backoff=5.0, jitter=0.0, ongoing_interval=0.5)
    run = Run(saga(("flight", {"retry": policy}), "hotel"))
    run.start()
    for _ in range(5):  # far more "not yet"s than attempts: none of them counts
        t = run.ongoing("flight")
        assert wakes(t) == [Wake(("flight", A), run.attempt("flight", A), run.now + 0.5)]
        assert run.op("flight") is OpStatus.RETRY_WAIT
        assert started(run.due("flight")) == [("flight", A)]
    run.ok("flight")
    assert run.running() == [("hotel", A)]


def test_an_ongoing_answer_still_leaves_the_op_its_attempts_for_real_errors() -> None:
    policy = RetryPolicy(max_attempts=2, backoff=1.0, jitter=0.0)
    run = Run(saga(("flight", {"retry": policy}), "hotel"))
    run.start()
    run.ongoing("flight")
    run.due("flight")
    run.unknown("flight")  # the first real error: one attempt left
    assert run.op("flight") is OpStatus.RETRY_WAIT
    run.due("flight")
    run.unknown("flight")  # the second: given up, rolled back
    assert run.status is TxStatus.ABORTING


def test_an_action_still_ongoing_while_aborting_is_compensated_not_waited_for() -> None:
    run = Run(saga(("flight", {"depends_on": []}), ("hotel", {"depends_on": []})))
    run.start()
    run.fail("flight")
    assert run.status is TxStatus.ABORTING
    run.ongoing("hotel")
    assert run.op("hotel") is OpStatus.FAILED
    assert run.running() == [("hotel", C)]


def test_a_compensation_answering_ongoing_is_asked_again() -> None:
    run = Run(saga("flight", "hotel"))
    run.start()
    run.ok("flight")
    run.fail("hotel")
    run.ok("hotel", C)
    t = run.ongoing("flight", C)
    assert run.op("flight", C) is OpStatus.RETRY_WAIT
    assert len(wakes(t)) == 1
    run.due("flight", C)
    run.ok("flight", C)
    assert run.status is TxStatus.FAILED
