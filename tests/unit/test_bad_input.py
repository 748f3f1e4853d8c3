"""Bad input never gets in (DESIGN 3.6): refused with a clear error, before anything is
written. Runs through a real coordinator on the log chosen by LEGATO_TEST_LOG."""

from __future__ import annotations

import asyncio
import datetime
import math
import threading
from collections import Counter
from typing import Any

import pytest

import legato
from legato import (
    Coordinator,
    DefinitionError,
    GidConflict,
    OpName,
    OpStatus,
    PayloadError,
    Saga,
    StepContext,
    TxStatus,
)


class Ledger:
    """Counts every call of every op, thread-safely (sync steps run in a pool)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def step(self, output: Any = None) -> Any:
        def run(ctx: StepContext) -> Any:
            with self.lock:
                self.calls[f"{ctx.step}.{ctx.op}"] += 1
            return output

        return run

    def trip(self, name: str = "trip") -> Saga:
        s = Saga(name)
        s.step("flight", action=self.step("F-1"), compensate=self.step())
        s.step("hotel", action=self.step("H-1"), compensate=self.step())
        return s


async def assert_nothing_written(coordinator: Coordinator, gid: str | None = None) -> None:
    assert await coordinator.list() == []
    if gid is not None:
        assert await coordinator.log.load(gid) is None
        assert await coordinator.log.events(gid) == []


# -- payloads that cannot be stored ------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"tags": {"window", "aisle"}}, "payload.tags: set is not JSON-serialisable"),
        ({"when": datetime.datetime(2026, 1, 1)}, "payload.when: datetime is not"),
        ({"amount": math.nan}, "payload.amount: nan is not a finite number"),
        ({"legs": [1.0, math.inf]}, "payload.legs[1]: inf is not a finite number"),
        ({"trip": {"legs": [{"at": datetime.date(2026, 1, 1)}]}}, "payload.trip.legs[0].at"),
        ({("from", "to"): "LHR-CDG"}, "payload: key ('from', 'to') is not a string"),
        (b"raw bytes", "payload: bytes is not JSON-serialisable"),
        (object(), "payload: object is not JSON-serialisable"),
    ],
    ids=["set", "datetime", "nan", "inf in a list", "nested date", "tuple key", "bytes", "object"],
)
async def test_a_payload_that_is_not_json_is_refused_naming_the_field_and_nothing_is_written(
    coordinator: Coordinator, payload: Any, field: str
) -> None:
    ledger = Ledger()
    with pytest.raises(PayloadError) as info:
        await coordinator.submit(ledger.trip(), payload, gid="bad-payload")
    assert field in str(info.value)
    await assert_nothing_written(coordinator, "bad-payload")
    assert ledger.calls == {}


@pytest.mark.parametrize("key", [1, None, True], ids=["int", "None", "bool"])
async def test_a_payload_with_a_key_that_is_not_a_string_is_refused(
    coordinator: Coordinator, key: Any
) -> None:
    with pytest.raises(PayloadError, match=r"payload\.seats: key"):
        await coordinator.submit(Ledger().trip(), {"seats": {key: "12A"}}, gid="bad-key")
    await assert_nothing_written(coordinator, "bad-key")


async def test_a_payload_with_a_lone_surrogate_is_refused_as_a_payload_error(
    coordinator: Coordinator,
) -> None:
    # it would only fail when the log encodes it, failing the writes batched with it
    with pytest.raises(PayloadError, match=r"payload\.name: the string is not valid Unicode"):
        await coordinator.submit(Ledger().trip(), {"name": "\ud800"}, gid="surrogate")
    await assert_nothing_written(coordinator, "surrogate")


async def test_a_payload_nested_too_deep_is_refused_as_a_payload_error(
    coordinator: Coordinator,
) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(PayloadError, match="nested deeper than"):
        await coordinator.submit(Ledger().trip(), deep, gid="deep")
    await assert_nothing_written(coordinator, "deep")


async def test_json_values_of_every_kind_are_stored_as_given(coordinator: Coordinator) -> None:
    payload = {
        "name": "Zoë ✈ 東京",
        "nul": "a\x00b",
        "n": [0, -1, 2**62, 1.5, -0.0],
        "flags": [True, False, None],
        "nested": {"": {"deep": [[], {}]}},
    }
    handle = await coordinator.submit(Ledger().trip(), payload, gid="kinds")
    assert (await handle.result(timeout=10)).succeeded
    tx, _ = await coordinator.get("kinds")
    assert tx.payload == payload


# -- definitions and gids refused before anything is written ---------------------------------


def cyclic() -> Saga:
    s = Saga("cyclic")
    s.step("a", action=Ledger().step(), depends_on=["b"])
    s.step("b", action=Ledger().step(), depends_on=["a"])
    return s


@pytest.mark.parametrize(
    ("saga", "message"),
    [
        (cyclic, "dependency cycle: a -> b -> a"),
        (lambda: Saga("empty"), "has no steps"),
        (
            lambda: (
                Saga("two pivots")
                .step("a", action=Ledger().step(), pivot=True)
                .step("b", action=Ledger().step(), pivot=True)
            ),
            "more than one pivot",
        ),
    ],
    ids=["cycle", "no steps", "two pivots"],
)
async def test_a_bad_definition_is_refused_before_anything_is_written(
    coordinator: Coordinator, saga: Any, message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        await coordinator.submit(saga(), {"ok": 1}, gid="bad-def")
    await assert_nothing_written(coordinator, "bad-def")


@pytest.mark.parametrize(
    "gid",
    ["", "x" * 129, 42, "a\r\nX-Evil: 1", "nul\x00", "a b", "a/b", "Zürich"],
    ids=["empty", "too long", "not a str", "CR/LF", "NUL", "blank", "slash", "non-ASCII"],
)
async def test_a_malformed_gid_is_refused_before_anything_is_written(
    coordinator: Coordinator, gid: Any
) -> None:
    with pytest.raises(DefinitionError, match=r"^gid: "):
        await coordinator.submit(Ledger().trip(), {}, gid=gid)
    await assert_nothing_written(coordinator)


# -- a gid is an idempotency key --------------------------------------------------------------


async def test_a_gid_resubmitted_after_the_saga_ended_returns_the_same_transaction(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()
    trip = ledger.trip()
    first = await coordinator.submit(trip, {"trip": 42}, gid="order-42")
    assert (await first.result(timeout=10)).succeeded
    again = await coordinator.submit(trip, {"trip": 42}, gid="order-42")
    assert again.gid == first.gid == "order-42"
    assert (await again.result(timeout=10)).outputs == {"flight": "F-1", "hotel": "H-1"}
    assert ledger.calls == {"flight.action": 1, "hotel.action": 1}
    assert [tx.gid for tx in await coordinator.list()] == ["order-42"]


async def test_a_gid_resubmitted_while_the_saga_runs_runs_it_once(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()
    release = asyncio.Event()
    calls: list[int] = []

    async def hold(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        await release.wait()
        return "held"

    trip = ledger.trip().step("hold", action=hold)
    first = await coordinator.submit(trip, {"trip": 7}, gid="order-7")
    again = await asyncio.gather(
        *(coordinator.submit(trip, {"trip": 7}, gid="order-7") for _ in range(3))
    )
    assert {h.gid for h in again} == {"order-7"}
    release.set()
    outcome = await first.result(timeout=10)
    assert outcome.succeeded
    assert ledger.calls == {"flight.action": 1, "hotel.action": 1}
    assert calls == [1]
    assert len(await coordinator.list()) == 1


async def test_a_gid_reused_with_a_different_payload_is_a_conflict_and_changes_nothing(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()
    trip = ledger.trip()
    await (await coordinator.submit(trip, {"trip": 1}, gid="order-1")).result(timeout=10)
    before, ops_before = await coordinator.get("order-1")
    events_before = await coordinator.events("order-1")
    with pytest.raises(GidConflict, match="different payload"):
        await coordinator.submit(trip, {"trip": 2}, gid="order-1")
    after, ops_after = await coordinator.get("order-1")
    assert (after.payload, after.status, after.version) == (
        {"trip": 1},
        TxStatus.SUCCEEDED,
        before.version,
    )
    assert ops_after == ops_before
    assert await coordinator.events("order-1") == events_before
    assert ledger.calls == {"flight.action": 1, "hotel.action": 1}


async def test_a_gid_reused_with_a_different_payload_while_running_is_a_conflict(
    coordinator: Coordinator,
) -> None:
    release = asyncio.Event()

    async def hold(ctx: StepContext) -> None:
        await release.wait()

    trip = Saga("held").step("hold", action=hold)
    handle = await coordinator.submit(trip, {"trip": 1}, gid="order-2")
    with pytest.raises(GidConflict, match="different payload"):
        await coordinator.submit(trip, {"trip": 1, "extra": True}, gid="order-2")
    release.set()
    assert (await handle.result(timeout=10)).succeeded
    tx, _ = await coordinator.get("order-2")
    assert tx.payload == {"trip": 1}


async def test_a_gid_reused_by_another_saga_is_a_conflict_and_changes_nothing(
    coordinator: Coordinator,
) -> None:
    ledger = Ledger()
    await (await coordinator.submit(ledger.trip(), {"x": 1}, gid="g-1")).result(timeout=10)
    before = await coordinator.get("g-1")
    other = Ledger()
    with pytest.raises(GidConflict, match="already used by saga 'trip' with another definition"):
        await coordinator.submit(other.trip("cruise"), {"x": 1}, gid="g-1")
    assert await coordinator.get("g-1") == before
    assert other.calls == {}


async def test_a_gid_reused_with_a_changed_definition_of_the_same_saga_is_a_conflict(
    coordinator: Coordinator, log_url: str
) -> None:
    ledger = Ledger()
    await (await coordinator.submit(ledger.trip(), {"x": 1}, gid="g-2")).result(timeout=10)
    before = await coordinator.get("g-2")
    changed = ledger.trip().step("car", action=ledger.step())
    # here, the saga name is taken by the old definition: refused at registration
    with pytest.raises(DefinitionError, match="different steps is already registered"):
        await coordinator.submit(changed, {"x": 1}, gid="g-2")
    # a coordinator deployed with the new definition sees the gid's old fingerprint
    async with Coordinator(log_url, recover=False) as redeployed:
        with pytest.raises(GidConflict, match="another definition"):
            await redeployed.submit(changed, {"x": 1}, gid="g-2")
    assert await coordinator.get("g-2") == before
    assert ledger.calls == {"flight.action": 1, "hotel.action": 1}


# -- outputs that cannot be stored --------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [{"seats": {"12A", "12B"}}, datetime.datetime(2026, 1, 1), math.nan, {1: "a"}],
    ids=["set", "datetime", "nan", "int key"],
)
async def test_a_step_that_returns_a_value_that_is_not_json_fails_definitively(
    coordinator: Coordinator, output: Any
) -> None:
    ledger = Ledger()
    s = Saga("odd")
    s.step("flight", action=ledger.step("F-1"), compensate=ledger.step())
    s.step("hotel", action=ledger.step(output), compensate=ledger.step())
    outcome = await (await coordinator.submit(s, {}, gid="odd-1")).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert outcome.reason is not None
    assert "the step returned a value that is not JSON: output" in outcome.reason
    _, ops = await coordinator.get("odd-1")
    hotel = next(o for o in ops if o.key == ("hotel", OpName.ACTION))
    assert (hotel.status, hotel.attempts) == (OpStatus.FAILED, 1)  # not worth retrying
    assert ledger.calls == {
        "flight.action": 1,
        "hotel.action": 1,
        "hotel.compensate": 1,
        "flight.compensate": 1,
    }


def test_the_public_errors_are_legato_errors() -> None:
    for error in (PayloadError, DefinitionError, GidConflict):
        assert issubclass(error, legato.LegatoError)
