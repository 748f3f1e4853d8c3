"""Defining a saga: the builder refuses malformed definitions by name, before any run."""

from __future__ import annotations

import math

import pytest

from legato import DefinitionError, RetryPolicy, Saga, StepContext
from legato._model import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY, OpName


def noop(ctx: StepContext) -> None:
    return None


async def anoop(ctx: StepContext) -> None:
    return None


def trip(*steps: str, **options: object) -> Saga:
    s = Saga("trip")
    for name in steps:
        s.step(name, action=noop, compensate=noop, **options)  # type: ignore[arg-type]
    return s


def refused(saga: Saga) -> str:
    with pytest.raises(DefinitionError) as info:
        saga.plan()
    return str(info.value)


# -- refused definitions -------------------------------------------------------------------


def test_a_saga_needs_a_name() -> None:
    with pytest.raises(DefinitionError, match="non-empty name"):
        Saga("")
    with pytest.raises(DefinitionError, match="non-empty name"):
        Saga(None)  # type: ignore[arg-type]


def test_a_saga_without_steps_is_refused() -> None:
    assert refused(Saga("empty")) == "saga 'empty' has no steps"


def test_a_duplicate_step_name_is_refused_when_added() -> None:
    s = trip("flight")
    with pytest.raises(DefinitionError, match="duplicate step name 'flight'"):
        s.step("flight", action=noop)
    assert [step.name for step in s.steps] == ["flight"]


@pytest.mark.parametrize("name", ["", None, 42, "book flight", "car\r\n", "x" * 65])
def test_a_step_name_is_a_branch_id_safe_on_the_wire(name: object) -> None:
    with pytest.raises(DefinitionError, match="step name: "):
        Saga("trip").step(name, action=noop)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", [None, "book_flight", 42])
def test_an_action_that_is_not_callable_is_refused(action: object) -> None:
    with pytest.raises(DefinitionError, match="action is neither callable nor an HttpCall"):
        Saga("trip").step("flight", action=action)  # type: ignore[arg-type]


def test_a_compensate_that_is_not_callable_is_refused() -> None:
    with pytest.raises(DefinitionError, match="compensate is neither callable nor an HttpCall"):
        Saga("trip").step("flight", action=noop, compensate="cancel")  # type: ignore[arg-type]


def test_a_dependency_on_an_unknown_step_is_refused() -> None:
    s = Saga("trip")
    s.step("flight", action=noop, depends_on=[])
    s.step("pay", action=noop, depends_on=["flight", "hotel"])
    assert refused(s) == "saga 'trip', step 'pay' depends on unknown step 'hotel'"


def test_a_step_that_depends_on_itself_is_refused() -> None:
    s = Saga("trip")
    s.step("flight", action=noop, depends_on=["flight"])
    assert refused(s) == "saga 'trip', step 'flight' depends on itself"


def test_a_dependency_cycle_is_refused_and_named() -> None:
    s = Saga("trip")
    s.step("flight", action=noop, depends_on=["pay"])
    s.step("hotel", action=noop, depends_on=["flight"])
    s.step("pay", action=noop, depends_on=["hotel"])
    s.step("email", action=noop, depends_on=[])
    assert refused(s) == "saga 'trip' has a dependency cycle: flight -> pay -> hotel -> flight"


def test_a_cycle_behind_a_valid_prefix_is_named_without_the_prefix() -> None:
    s = Saga("trip")
    s.step("start", action=noop, depends_on=["a"])
    s.step("a", action=noop, depends_on=["b"])
    s.step("b", action=noop, depends_on=["a"])
    assert refused(s).endswith("dependency cycle: a -> b -> a")


def test_depends_on_given_as_a_string_is_refused() -> None:
    # a string is iterable: "ab" would silently mean ["a", "b"]
    s = Saga("trip").step("a", action=noop).step("b", action=noop)
    with pytest.raises(DefinitionError, match="depends_on takes a list of step names"):
        s.step("c", action=noop, depends_on="ab")


def test_two_pivots_are_refused() -> None:
    s = Saga("trip")
    s.step("pay", action=noop, pivot=True)
    s.step("ship", action=noop, pivot=True)
    assert "more than one pivot step: ['pay', 'ship']" in refused(s)


def test_a_step_neither_before_nor_after_the_pivot_is_refused() -> None:
    s = Saga("trip")
    s.step("reserve", action=noop, depends_on=[])
    s.step("pay", action=noop, depends_on=["reserve"], pivot=True)
    s.step("newsletter", action=noop, depends_on=[])
    message = refused(s)
    assert "steps ['newsletter'] are neither before nor after the pivot 'pay'" in message


@pytest.mark.parametrize("option", ["retry", "compensate_retry"])
def test_a_retry_option_that_is_not_a_retry_policy_is_refused(option: str) -> None:
    with pytest.raises(DefinitionError, match=f"{option} must be a RetryPolicy"):
        Saga("trip").step("flight", action=noop, **{option: 3})  # type: ignore[arg-type]


@pytest.mark.parametrize("failures", [["SoldOut"], [ValueError()], [int], ValueError])
def test_failures_must_be_exception_classes(failures: object) -> None:
    with pytest.raises(DefinitionError, match="failures"):
        Saga("trip", failures=failures)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="failures"):
        Saga("trip").step("flight", action=noop, failures=failures)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf, "10", True])
def test_timeout_to_fail_must_be_a_positive_number_of_seconds(timeout: object) -> None:
    with pytest.raises(DefinitionError, match="timeout_to_fail must be a positive number"):
        Saga("trip", timeout_to_fail=timeout)  # type: ignore[arg-type]


def test_a_refused_definition_is_refused_every_time() -> None:
    s = Saga("trip").step("a", action=noop, depends_on=["b"])
    refused(s)
    refused(s)


# -- valid definitions ------------------------------------------------------------------


def test_steps_run_in_declaration_order_without_depends_on() -> None:
    plan = trip("flight", "hotel", "car").plan()
    assert [(s.name, s.deps) for s in plan.steps] == [
        ("flight", ()),
        ("hotel", ("flight",)),
        ("car", ("hotel",)),
    ]


def test_one_depends_on_makes_the_saga_a_graph_where_unnamed_deps_start_at_once() -> None:
    s = Saga("trip")
    s.step("flight", action=noop)
    s.step("hotel", action=noop)
    s.step("pay", action=noop, depends_on=["flight", "hotel", "flight"])
    plan = s.plan()
    assert [(st.name, st.deps) for st in plan.steps] == [
        ("flight", ()),
        ("hotel", ()),
        ("pay", ("flight", "hotel")),  # a repeated name counts once
    ]


def test_a_graph_may_name_a_step_declared_later() -> None:
    s = Saga("trip")
    s.step("pay", action=noop, depends_on=["flight"])
    s.step("flight", action=noop, depends_on=[])
    assert [st.name for st in s.plan().steps] == ["flight", "pay"]


def test_the_plan_records_compensations_pivot_and_retry_policies() -> None:
    fast = RetryPolicy(max_attempts=2)
    s = Saga("shop")
    s.step("reserve", action=noop, compensate=anoop, retry=fast)
    s.step("pay", action=anoop, pivot=True)
    s.step("ship", action=noop, compensate_retry=fast)
    plan = s.plan()
    reserve, pay, ship = plan.steps
    assert (reserve.compensable, reserve.pivot, reserve.action_retry) == (True, False, fast)
    assert reserve.compensate_retry == DEFAULT_COMPENSATE_RETRY
    assert (pay.compensable, pay.pivot, pay.action_retry) == (False, True, DEFAULT_ACTION_RETRY)
    assert ship.compensate_retry == fast
    assert plan.pivot == "pay"
    assert plan.after_pivot == frozenset({"ship"})
    assert plan.op_keys() == [
        ("reserve", OpName.ACTION),
        ("reserve", OpName.COMPENSATE),
        ("pay", OpName.ACTION),
        ("ship", OpName.ACTION),
    ]


def test_after_the_pivot_means_every_step_that_depends_on_it_even_indirectly() -> None:
    s = Saga("shop")
    s.step("reserve", action=noop, depends_on=[])
    s.step("stock", action=noop, depends_on=[])
    s.step("pay", action=noop, depends_on=["reserve", "stock"], pivot=True)
    s.step("ship", action=noop, depends_on=["pay"])
    s.step("invoice", action=noop, depends_on=["ship", "reserve"])
    assert s.plan().after_pivot == frozenset({"ship", "invoice"})


def test_a_sequential_saga_with_a_pivot_is_valid_anywhere() -> None:
    for i in range(3):
        s = Saga("trip")
        for j, name in enumerate(["a", "b", "c"]):
            s.step(name, action=noop, pivot=i == j)
        assert s.plan().after_pivot == frozenset(["a", "b", "c"][i + 1 :])


def test_the_plan_is_rebuilt_after_a_step_is_added() -> None:
    s = trip("flight")
    first = s.plan()
    assert s.plan() is first
    s.step("hotel", action=noop)
    assert [st.name for st in s.plan().steps] == ["flight", "hotel"]


def test_steps_can_be_chained() -> None:
    s = Saga("trip").step("a", action=noop).step("b", action=noop)
    assert [st.name for st in s.steps] == ["a", "b"]


def test_saga_and_step_failures_are_kept_as_given() -> None:
    s = Saga("trip", failures=[KeyError])
    s.step("flight", action=noop, failures=(LookupError, ValueError))
    assert s.failures == (KeyError,)
    assert s.by_name("flight").failures == (LookupError, ValueError)


def test_the_target_of_an_op_names_its_callable() -> None:
    s = trip("flight")
    s.step("email", action=anoop)
    assert s.target("flight", OpName.ACTION) == f"{__name__}:noop"
    assert s.target("email", OpName.ACTION) == f"{__name__}:anoop"
    assert s.target("email", OpName.COMPENSATE) == ""
    with pytest.raises(DefinitionError, match="has no step 'car'"):
        s.target("car", OpName.ACTION)


def test_the_idempotency_key_of_a_step_context_joins_gid_step_and_op() -> None:
    ctx = StepContext("order-7", "pay", OpName.COMPENSATE, 2, {"amount": 10})
    assert ctx.idempotency_key == "order-7/pay/compensate"


# -- fingerprint -------------------------------------------------------------------------


def test_the_fingerprint_is_stable() -> None:
    assert trip("flight", "hotel").fingerprint() == trip("flight", "hotel").fingerprint()
    s = trip("flight", "hotel")
    assert s.fingerprint() == s.fingerprint()
    assert len(s.fingerprint()) == 32


def test_the_fingerprint_does_not_depend_on_the_callables_or_retry_policies() -> None:
    a = Saga("trip").step("flight", action=noop, compensate=noop)
    b = Saga("trip").step(
        "flight", action=anoop, compensate=anoop, retry=RetryPolicy(max_attempts=9)
    )
    assert a.fingerprint() == b.fingerprint()


def _variants() -> dict[str, Saga]:
    def graph(*deps: list[str]) -> Saga:
        s = Saga("trip")
        for name, d in zip(["flight", "hotel", "car"], deps, strict=True):
            s.step(name, action=noop, compensate=noop, depends_on=d)
        return s

    return {
        "base": trip("flight", "hotel", "car"),
        "renamed saga": Saga("journey")
        .step("flight", action=noop, compensate=noop)
        .step("hotel", action=noop, compensate=noop)
        .step("car", action=noop, compensate=noop),
        "renamed step": trip("flight", "hotel", "bike"),
        "one step fewer": trip("flight", "hotel"),
        "reordered": trip("hotel", "flight", "car"),
        "no compensate": Saga("trip")
        .step("flight", action=noop, compensate=noop)
        .step("hotel", action=noop)
        .step("car", action=noop, compensate=noop),
        "pivot": Saga("trip")
        .step("flight", action=noop, compensate=noop)
        .step("hotel", action=noop, compensate=noop, pivot=True)
        .step("car", action=noop, compensate=noop),
        "graph": graph([], ["flight"], ["hotel"]),
        "parallel": graph([], [], ["flight", "hotel"]),
    }


def test_the_fingerprint_changes_with_the_structure() -> None:
    prints = {name: s.fingerprint() for name, s in _variants().items() if name != "graph"}
    assert len(set(prints.values())) == len(prints), prints


def test_a_graph_spelled_like_a_sequence_has_the_sequences_fingerprint() -> None:
    v = _variants()
    assert v["graph"].fingerprint() == v["base"].fingerprint()


# -- retry policies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"backoff": -0.1}, "backoff and max_backoff must be >= 0"),
        ({"max_backoff": -1}, "backoff and max_backoff must be >= 0"),
        ({"multiplier": 0.5}, "multiplier >= 1"),
        ({"jitter": -0.1}, "jitter is a fraction between 0 and 1"),
        ({"jitter": 1.5}, "jitter is a fraction between 0 and 1"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": -2.0}, "timeout must be positive"),
    ],
)
def test_a_malformed_retry_policy_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_the_delay_grows_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff=0.5, multiplier=2.0, max_backoff=3.0, jitter=0.0)
    delays = [policy.delay(n, "seed") for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_the_jitter_stays_within_its_fraction_of_the_delay() -> None:
    policy = RetryPolicy(backoff=1.0, multiplier=2.0, max_backoff=8.0, jitter=0.25)
    for attempt in range(1, 10):
        base = min(8.0, 2.0 ** (attempt - 1))
        delays = [policy.delay(attempt, f"gid-{i}:flight:action") for i in range(200)]
        assert all(base * 0.75 <= d <= base * 1.25 for d in delays)
        assert len(set(delays)) > 150  # different transactions spread out


def test_the_delay_is_deterministic_per_seed_and_attempt() -> None:
    policy = RetryPolicy(jitter=0.5)
    assert policy.delay(3, "g:flight:action") == policy.delay(3, "g:flight:action")
    assert policy.delay(3, "g:flight:action") != policy.delay(3, "h:flight:action")
    assert policy.delay(3, "g:flight:action") != policy.delay(4, "g:flight:action") / 2


def test_full_jitter_never_makes_a_negative_delay() -> None:
    policy = RetryPolicy(backoff=1.0, jitter=1.0)
    assert all(0.0 <= policy.delay(1, str(i)) <= 2.0 for i in range(500))


def test_a_zero_backoff_retries_at_once() -> None:
    assert RetryPolicy(backoff=0.0).delay(5, "seed") == 0.0


def test_the_delay_of_a_very_late_attempt_is_the_cap() -> None:
    assert RetryPolicy(jitter=0.0).delay(2000, "seed") == 10.0
