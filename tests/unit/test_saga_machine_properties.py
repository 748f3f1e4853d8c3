"""The saga machine under a random environment, and every status/event pair.

Hypothesis builds random plans (sequential or graphs, with or without
compensations and a pivot) and plays the environment: it answers the
machine's commands in any order with any outcome, replays old events, delivers
results of attempts lost in a crash, times out, aborts, crashes the driver and
retries stuck sagas. After every event the rules of DESIGN section 4 must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato import RetryPolicy, Saga
from legato._model import OpKey, OpName, OpStatus, TxStatus
from legato.modes._core import (
    AbortRequested,
    Command,
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

# derandomize: the same examples on every run (a failure is reproducible by rerunning);
# no example database is written into the checkout
PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# status moves the machine may make on its own; ForceEnd may also end any live saga
ALLOWED_MOVES = {
    (TxStatus.SUBMITTED, TxStatus.SUBMITTED),
    (TxStatus.SUBMITTED, TxStatus.SUCCEEDED),
    (TxStatus.SUBMITTED, TxStatus.ABORTING),
    # an abort with nothing left to undo passes through aborting within one event
    (TxStatus.SUBMITTED, TxStatus.FAILED),
    (TxStatus.ABORTING, TxStatus.ABORTING),
    (TxStatus.ABORTING, TxStatus.FAILED),
}


def noop(ctx: object) -> None:
    return None


# -- random plans ---------------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> SagaPlan:
    """1-6 steps, sequential or a graph over earlier steps, an optional valid pivot."""
    n = draw(st.integers(1, 6))
    names = [f"s{i}" for i in range(n)]
    graph = draw(st.booleans())
    pivot = draw(st.none() | st.integers(0, n - 1))
    saga = Saga("prop")
    for i, name in enumerate(names):
        earlier = names[:i]
        deps: list[str] | None = None
        if graph:
            some = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
            if pivot is None or i < pivot:
                deps = some
            elif i == pivot:
                deps = earlier  # every step before the pivot is one of its dependencies
            else:
                deps = sorted({*some, names[pivot]})  # every step after it depends on it
        compensable = draw(st.sampled_from([True, True, True, False]))
        saga.step(
            name,
            action=noop,
            compensate=noop if compensable else None,
            depends_on=deps,
            pivot=i == pivot,
            retry=RetryPolicy(max_attempts=draw(st.integers(1, 3)), backoff=0.5),
            compensate_retry=RetryPolicy(max_attempts=draw(st.integers(1, 3)), backoff=0.5),
        )
    return saga.plan()


# -- the rules, checked after every event -------------------------------------------------


def parked(s: OpState) -> bool:
    return s.status is OpStatus.RETRY_WAIT and s.next_at is None


def started_steps(plan: SagaPlan, state: TxState) -> list[str]:
    """Compensable steps whose action started and ended, latest completion first."""
    done = [
        (s.completed or 0, k[0])
        for k, s in state.ops.items()
        if k[1] is A
        and s.status in (OpStatus.SUCCEEDED, OpStatus.FAILED)
        and plan.step(k[0]).compensable
    ]
    return [name for _, name in sorted(done, reverse=True)]


def command_matches(state: TxState, cmd: Command) -> bool:
    s = state.ops.get(cmd.key)
    if s is None or s.attempts != cmd.attempt:
        return False
    if isinstance(cmd, RunOp):
        return s.status is OpStatus.RUNNING
    return s.status is OpStatus.RETRY_WAIT and s.next_at == cmd.at


def check_state(plan: SagaPlan, state: TxState, forced: bool) -> None:
    """What holds of every state the machine can reach."""
    ops = state.ops
    actions = {k[0]: s for k, s in ops.items() if k[1] is A}
    comps = {k[0]: s for k, s in ops.items() if k[1] is C}
    assert set(ops) == set(plan.op_keys())

    for s in ops.values():
        assert s.next_at is None or s.status is OpStatus.RETRY_WAIT
        assert s.budget <= s.attempts
    for key, s in ops.items():
        assert s.budget <= plan.policy(key).max_attempts

    # an action starts only once every step it depends on has succeeded
    for name, s in actions.items():
        if s.status is not OpStatus.PENDING:
            assert all(actions[d].status is OpStatus.SUCCEEDED for d in plan.step(name).deps)
        assert (s.completed is not None) == (s.status in (OpStatus.SUCCEEDED, OpStatus.FAILED))
    completed = [s.completed for s in actions.values() if s.completed is not None]
    assert len(completed) == len(set(completed))

    pivot = plan.pivot
    pivot_passed = pivot is not None and actions[pivot].status is OpStatus.SUCCEEDED
    for name in plan.after_pivot:
        if actions[name].status is not OpStatus.PENDING:
            assert pivot_passed

    if forced:
        assert state.status.ended
        assert state.stuck is None
        return

    if state.status.ended:
        assert state.stuck is None
    else:
        # stuck, with its reason, exactly while some op is parked for an operator
        assert (state.stuck is not None) == any(parked(s) for s in ops.values())

    if pivot_passed:
        assert state.status in (TxStatus.SUBMITTED, TxStatus.SUCCEEDED)

    if state.status is TxStatus.SUBMITTED:
        assert all(s.status is OpStatus.PENDING for s in comps.values())
        assert all(s.status is not OpStatus.FAILED for s in actions.values())

    if state.status is TxStatus.SUCCEEDED:
        assert all(s.status is OpStatus.SUCCEEDED for s in actions.values())
        assert all(s.status is OpStatus.PENDING for s in comps.values())

    if state.status is TxStatus.ABORTING:
        assert state.reason
        # going back: nothing waits to retry forward
        assert all(s.status is not OpStatus.RETRY_WAIT for s in actions.values())

    # compensations: only once no action is in flight, one at a time, latest first
    active = [n for n, s in comps.items() if s.status not in (OpStatus.PENDING, OpStatus.SUCCEEDED)]
    assert len(active) <= 1
    assert all(s.status is not OpStatus.FAILED for s in comps.values())
    if any(s.status is not OpStatus.PENDING for s in comps.values()):
        assert state.status in (TxStatus.ABORTING, TxStatus.FAILED)
        assert all(s.status is not OpStatus.RUNNING for s in actions.values())
    order = started_steps(plan, state)
    for name, s in comps.items():
        if s.status is not OpStatus.PENDING:
            assert name in order
            later = order[: order.index(name)]
            assert all(comps[m].status is OpStatus.SUCCEEDED for m in later)

    if state.status is TxStatus.FAILED:
        assert state.reason
        assert all(
            s.status in (OpStatus.PENDING, OpStatus.SUCCEEDED, OpStatus.FAILED)
            for s in actions.values()
        )
        for name in order:
            assert comps[name].status is OpStatus.SUCCEEDED
        for name, s in actions.items():
            if s.status is OpStatus.PENDING and name in comps:
                assert comps[name].status is OpStatus.PENDING


def check_transition(
    plan: SagaPlan, before: TxState, event: Event, t: Transition, forced: bool
) -> None:
    """What holds of every step from one state to the next."""
    after = t.state
    assert isinstance(t, Transition)
    if before.status.ended:
        assert not t.changed
    if not t.changed:
        assert after is before
        assert t.commands == ()
        return

    if isinstance(event, ForceEnd):
        assert after.status is event.status
    else:
        assert (before.status, after.status) in ALLOWED_MOVES

    for key, s in before.ops.items():
        assert after.ops[key].attempts >= s.attempts
        if after.ops[key].status is OpStatus.SUCCEEDED and s.status is not OpStatus.SUCCEEDED:
            # only the op's own success report makes it succeeded
            assert isinstance(event, OpSucceeded)
            assert event.key == key

    # every command is for the state just written, and every new attempt has its command
    for cmd in t.commands:
        assert command_matches(after, cmd), (cmd, after.ops.get(cmd.key))
        if isinstance(cmd, RunOp):
            assert cmd.attempt == before.ops[cmd.key].attempts + 1
            assert cmd.timeout == plan.policy(cmd.key).timeout
            if cmd.key[1] is A:
                assert after.status is TxStatus.SUBMITTED
    runs = {(c.key, c.attempt) for c in t.commands if isinstance(c, RunOp)}
    wakes = {(c.key, c.attempt) for c in t.commands if isinstance(c, Wake)}
    for key, s in after.ops.items():
        old = before.ops[key]
        if s.status is OpStatus.RUNNING and (old.status, old.attempts) != (s.status, s.attempts):
            assert (key, s.attempts) in runs
        new_wait = s.status is OpStatus.RETRY_WAIT and s.next_at is not None
        if new_wait and (old.status, old.next_at) != (s.status, s.next_at):
            assert (key, s.attempts) in wakes
        if new_wait and isinstance(event, Resume):
            assert (key, s.attempts) in wakes  # a resumed driver has no timers: re-arm all

    check_state(plan, after, forced)


# -- the environment -------------------------------------------------------------------------


@dataclass
class World:
    plan: SagaPlan
    state: TxState
    now: float = 1000.0
    outstanding: list[Command] = field(default_factory=list)
    lost: list[Command] = field(default_factory=list)  # dropped by a crash
    applied: list[Event] = field(default_factory=list)  # op results and wake-ups that counted
    compensation_starts: list[str] = field(default_factory=list)
    forced: bool = False
    events: int = 0

    def tick(self, at: float | None = None) -> float:
        self.now = max(self.now + 1.0, at or 0.0)
        return self.now

    def feed(self, event: Event) -> Transition:
        before = self.state
        pivot_was_passed = self.pivot_passed()
        t = apply(self.plan, before, event)  # never raises
        if isinstance(event, ForceEnd) and t.changed:
            self.forced = True
        check_transition(self.plan, before, event, t, self.forced)
        if pivot_was_passed and not self.forced:
            assert t.state.status is not TxStatus.ABORTING
        if t.changed and isinstance(
            event, OpSucceeded | OpFailed | OpUnknown | OpOngoing | RetryDue
        ):
            self.applied.append(event)
        for cmd in t.commands:
            if isinstance(cmd, RunOp) and cmd.key[1] is C and cmd.attempt == 1:
                self.compensation_starts.append(cmd.key[0])
        self.state = t.state
        self.outstanding.extend(t.commands)
        self.events += 1
        if not self.state.status.ended and self.state.stuck is None:
            # nothing is silently dropped: something is in flight or due to wake up
            assert any(command_matches(self.state, c) for c in self.outstanding), self.state
        return t

    def pivot_passed(self) -> bool:
        p = self.plan.pivot
        return p is not None and self.state.ops[(p, A)].status is OpStatus.SUCCEEDED

    def answer(self, cmd: Command, outcome: str) -> Transition:
        if isinstance(cmd, Wake):
            return self.feed(RetryDue(cmd.key, cmd.attempt, self.tick(cmd.at)))
        now = self.tick()
        if outcome == "succeeded":
            return self.feed(OpSucceeded(cmd.key, cmd.attempt, now, output=f"{cmd.key[0]}!"))
        if outcome == "failed":
            return self.feed(OpFailed(cmd.key, cmd.attempt, now, "no"))
        if outcome == "ongoing":
            return self.feed(OpOngoing(cmd.key, cmd.attempt, now, "not yet"))
        return self.feed(OpUnknown(cmd.key, cmd.attempt, now, "timeout"))

    def crash(self) -> Transition:
        self.lost.extend(self.outstanding)
        self.outstanding.clear()
        return self.feed(Resume(self.tick()))


OUTCOMES = st.sampled_from(["succeeded", "succeeded", "failed", "unknown", "ongoing"])
MOVES = st.sampled_from(
    ["answer"] * 8
    + ["replay", "late", "late", "timeout", "abort", "crash", "operator_retry", "force_end"]
)


def play(world: World, data: st.DataObject, moves: int) -> None:
    for _ in range(moves):
        move = data.draw(MOVES)
        if move == "answer" and world.outstanding:
            i = data.draw(st.integers(0, len(world.outstanding) - 1))
            world.answer(world.outstanding.pop(i), data.draw(OUTCOMES))
        elif move == "answer" and world.state.stuck is not None:
            world.feed(OperatorRetry(world.tick()))
        elif move == "replay" and world.applied:
            # the same event again: a duplicate delivery changes nothing
            duplicate = data.draw(st.sampled_from(world.applied))
            before = world.state
            t = world.feed(duplicate)
            assert not t.changed
            assert world.state is before
        elif move == "late" and world.lost:
            cmd = world.lost.pop(data.draw(st.integers(0, len(world.lost) - 1)))
            before = world.state
            t = world.answer(cmd, data.draw(OUTCOMES))
            if isinstance(cmd, RunOp):
                # an attempt lost in a crash was retried or ended at the resume: too late
                assert not t.changed
                assert world.state is before
        elif move == "timeout" or move == "abort":
            before = world.state
            p = world.plan.pivot
            may = before.status is TxStatus.SUBMITTED and (
                p is None or before.ops[(p, A)].status is OpStatus.PENDING
            )
            now = world.tick()
            event: Event = Timeout(now) if move == "timeout" else AbortRequested(now)
            t = world.feed(event)
            assert t.changed == may
            if may:
                assert t.state.status in (TxStatus.ABORTING, TxStatus.FAILED)
        elif move == "crash":
            world.crash()
        elif move == "operator_retry":
            before = world.state
            t = world.feed(OperatorRetry(world.tick()))
            stuck_ops = any(parked(s) for s in before.ops.values()) and not before.status.ended
            assert t.changed == stuck_ops
        elif move == "force_end" and data.draw(st.integers(0, 3)) == 0:
            status = data.draw(st.sampled_from(list(TxStatus)))
            world.feed(ForceEnd(world.tick(), status, "by hand"))


def finish(world: World, bound: int) -> None:
    """A cooperative environment: every op succeeds, an operator retries what is stuck."""
    for _ in range(bound):
        if world.state.status.ended:
            return
        if world.outstanding:
            world.answer(world.outstanding.pop(0), "succeeded")
        elif world.state.stuck is not None:
            world.feed(OperatorRetry(world.tick()))
        else:
            pytest.fail(f"deadlock: nothing outstanding in {world.state}")
    pytest.fail(f"not ended after {bound} cooperative events: {world.state}")


@PROPERTY_SETTINGS
@given(plan=plans(), data=st.data())
def test_a_random_environment_never_breaks_the_saga_rules(
    plan: SagaPlan, data: st.DataObject
) -> None:
    world = World(plan, new_state("gid-1", plan))
    world.feed(Resume(world.tick(), fresh=True))
    play(world, data, data.draw(st.integers(0, 60)))
    # every op is answered at most a few times before the saga ends
    finish(world, bound=20 * len(plan.op_keys()) + 20)

    end = world.state
    assert end.status.ended
    if world.forced:
        return
    assert end.stuck is None
    if end.status is TxStatus.SUCCEEDED:
        assert set(end.outputs()) == {s.name for s in plan.steps}
    else:
        # every compensation ran once it was its turn, in reverse completion order
        assert world.compensation_starts == started_steps(plan, end)
    # an ended saga never changes, whatever arrives
    for event in (*world.applied[-3:], Resume(world.tick()), Timeout(world.tick())):
        t = apply(plan, end, event)
        assert not t.changed
        assert t.state is end


@PROPERTY_SETTINGS
@given(plan=plans(), data=st.data())
def test_every_saga_ends_when_every_op_succeeds(plan: SagaPlan, data: st.DataObject) -> None:
    world = World(plan, new_state("gid-2", plan))
    world.feed(Resume(world.tick(), fresh=True))
    while world.outstanding:
        i = data.draw(st.integers(0, len(world.outstanding) - 1))
        world.answer(world.outstanding.pop(i), "succeeded")
    assert world.state.status is TxStatus.SUCCEEDED
    assert world.events == len(plan.steps) + 1  # one start, then one event per step


# -- every status x every event -----------------------------------------------------------


def exhaustive_plans() -> dict[str, SagaPlan]:
    sequential = Saga("seq")
    sequential.step("a", action=noop, compensate=noop, retry=RetryPolicy(max_attempts=2))
    sequential.step("b", action=noop, compensate=noop, retry=RetryPolicy(max_attempts=1))
    pivoted = Saga("pivot")
    pivoted.step("a", action=noop, compensate=noop)
    pivoted.step("p", action=noop, pivot=True)
    pivoted.step("z", action=noop, compensate_retry=RetryPolicy(max_attempts=1))
    return {"sequential": sequential.plan(), "pivot": pivoted.plan()}


OP_VARIANTS = {
    "pending": OpState(),
    "running": OpState(OpStatus.RUNNING, attempts=1, budget=1),
    "running-out-of-attempts": OpState(OpStatus.RUNNING, attempts=3, budget=3),
    "retry_wait": OpState(OpStatus.RETRY_WAIT, attempts=1, budget=1, next_at=50.0, error="x"),
    "parked": OpState(OpStatus.RETRY_WAIT, attempts=1, budget=1, error="x"),
    "succeeded": OpState(OpStatus.SUCCEEDED, attempts=1, budget=1, output=1, completed=1),
    "failed": OpState(OpStatus.FAILED, attempts=1, budget=1, error="x", completed=1),
}


def events_for(key: OpKey) -> list[Event]:
    now = 100.0
    out: list[Event] = [Resume(now), Resume(now, fresh=True)]
    for attempt in (1, 2, 3):
        out += [
            OpSucceeded(key, attempt, now, "ok"),
            OpFailed(key, attempt, now),
            OpUnknown(key, attempt, now),
            OpOngoing(key, attempt, now),
            RetryDue(key, attempt, now),
        ]
    out += [Timeout(now), AbortRequested(now), OperatorRetry(now)]
    out += [ForceEnd(now, status, "by hand") for status in TxStatus]
    return out


EVENT_TYPES = [
    Resume, OpSucceeded, OpFailed, OpUnknown, OpOngoing, RetryDue,
    Timeout, AbortRequested, OperatorRetry, ForceEnd,
]  # fmt: skip


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("status", list(TxStatus), ids=str)
def test_every_status_and_event_pair_gives_a_consistent_transition(
    status: TxStatus, event_type: type
) -> None:
    for plan, state, key in _cases(status):
        for event in events_for(key):
            if type(event) is not event_type:
                continue
            t = apply(plan, state, event)
            assert isinstance(t, Transition)
            assert isinstance(t.state, TxState)
            assert set(t.state.ops) == set(state.ops)
            if not t.changed:
                assert t.state is state
                assert t.commands == ()
                assert t.note
            if status.ended and not isinstance(event, ForceEnd):
                assert not t.changed
            if isinstance(event, ForceEnd):
                assert t.changed == (event.status.ended and not status.ended)
                if t.changed:
                    assert t.state.status is event.status
                    assert t.state.stuck is None
            op = state.ops[key]
            current = op.attempts == getattr(event, "attempt", None)
            is_result = isinstance(event, OpSucceeded | OpFailed | OpUnknown | OpOngoing)
            if is_result and (not (current and op.status is OpStatus.RUNNING) or status.ended):
                assert not t.changed
            if isinstance(event, RetryDue) and not (current and op.next_at is not None):
                assert not t.changed
            if isinstance(event, Timeout | AbortRequested) and status is not TxStatus.SUBMITTED:
                assert not t.changed
            for k, s in state.ops.items():
                assert t.state.ops[k].attempts >= s.attempts
            for cmd in t.commands:
                assert command_matches(t.state, cmd), (event, cmd)


def _cases(status: TxStatus) -> list[tuple[SagaPlan, TxState, OpKey]]:
    """One op of each plan in each status variant, the others pending."""
    out: list[tuple[SagaPlan, TxState, OpKey]] = []
    for plan in exhaustive_plans().values():
        base = new_state("g", plan)
        for key in plan.op_keys():
            for op in OP_VARIANTS.values():
                ops = {**base.ops, key: op}
                out.append((plan, replace(base, status=status, ops=ops), key))
    return out
