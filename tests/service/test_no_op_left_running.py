"""No op is ever left running (DESIGN section 10): any exception while delivering an op,
in any transport, is that attempt's unknown outcome, with its type and message, and the
op is retried per its policy: its attempts grow, then it succeeds, or its saga rolls
back, or it ends stuck with the error for an operator to see. Nothing escapes as a
task exception no one retrieves.

Each test injects one exception where a user's input or a bug of ours would raise it:
a header the HTTP client refuses, a call the log holds that cannot be decoded, an
inner call of a transport raising (monkeypatched: what is under test is the runner's
handling), a step thread ending with ``SystemExit``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import legato.transports.xa
from legato import Coordinator, OpName, OpStatus, RetryPolicy, Saga, TxQuery, TxStatus
from legato._initiator import prepared
from legato._model import Mode, OpRecord, TxRecord
from legato.coordinator import WIRE_SAGA
from legato.log import NewTransaction
from legato.transports import broker as broker_transport
from legato.transports import http as http_transport
from legato.transports.http import HttpCall
from legato.transports.local import LocalTransport
from tests.support.scripted_participant import Participant
from tests.support.services import need_service, port_problem

FAST = RetryPolicy(max_attempts=3, backoff=0.05, jitter=0.0)


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler ("Task exception was never
    retrieved", an exception in a callback)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(before)


def nothing_escaped(errors: list[dict[str, Any]]) -> bool:
    gc.collect()  # a task's unretrieved exception is reported when the task is collected
    return errors == []


def failing(times: int, exc: Exception, original: Callable[..., Any]) -> Callable[..., Any]:
    """``original``, raising ``exc`` on its first ``times`` calls."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise exc
        return original(*args, **kwargs)

    return call


def raising_for(path: str, times: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the answer of a call to ``path`` (inside the HTTP transport) raises, the
    first ``times`` times: a bug of ours, say."""
    original = http_transport._read
    broken = failing(times, RuntimeError("the reader broke"), original)

    async def read(response: Any, cap: int) -> bytes:
        reader = broken if response.url.path == path else original
        return await reader(response, cap)  # type: ignore[no-any-return]

    monkeypatch.setattr(http_transport, "_read", read)


async def op_after(c: Coordinator, gid: str, key: tuple[str, OpName], attempts: int) -> OpRecord:
    """The op, once it has made ``attempts`` attempts and is not running."""
    async with asyncio.timeout(20):
        while True:
            _, ops = await c.get(gid)
            op = next(o for o in ops if o.key == key)
            if op.attempts >= attempts and op.status is not OpStatus.RUNNING:
                return op
            await asyncio.sleep(0.02)


async def unknown_errors(c: Coordinator, gid: str) -> list[str]:
    return [str(e.detail["error"]) for e in await c.events(gid) if e.kind == "op.unknown"]


# -- the HTTP transport -------------------------------------------------------------------


async def test_a_header_the_http_client_refuses_is_an_unknown_outcome_retried(
    log_url: str, participant: Participant, loop_errors: list[dict[str, Any]]
) -> None:
    # written as a laxer version (or an unchecked edge) would have: CR/LF in a header value
    confirm = participant.script("/confirm", [(200, {})])
    cancel = participant.script("/cancel", [(200, {})])
    async with Coordinator(log_url, poll_interval=0.05) as c:
        gid = f"crlf-{uuid.uuid4().hex[:8]}"
        new = prepared(gid, 30, None, time.time(), mode=Mode.TCC, name="wire:tcc")
        new.tx.options["headers"] = {"X-Tenant": "acme\r\nX-Evil: 1"}  # past every check
        await c.log.create(new)
        await c.register_tcc_branch(gid, "01", HttpCall(confirm), HttpCall(cancel))
        await c.submit_tcc(gid)
        op = await op_after(c, gid, ("01", OpName.CONFIRM), attempts=3)
        assert op.status is OpStatus.RETRY_WAIT
        assert op.error == (
            f"confirm failed: ValueError calling {confirm}: "
            "Forbidden control character detected in headers. Potential header injection attack."
        )
        await c.force_end(gid, TxStatus.FAILED)
    assert participant.calls_to("/confirm") == [], "nothing was sent"
    assert nothing_escaped(loop_errors)


async def test_an_exception_inside_the_http_transport_rolls_the_saga_back_after_its_attempts(
    log_url: str,
    participant: Participant,
    monkeypatch: pytest.MonkeyPatch,
    loop_errors: list[dict[str, Any]],
) -> None:
    raising_for("/car", 99, monkeypatch)
    flight = participant.script("/flight", [(200, {})])
    saga = Saga("trip")
    saga.step("flight", action=HttpCall(flight), compensate=HttpCall(flight + "/cancel"))
    saga.step("car", action=HttpCall(participant.url + "/car"), retry=FAST)
    async with Coordinator(log_url, poll_interval=0.05) as c:
        outcome = await (await c.submit(saga)).result(timeout=20)
        errors = await unknown_errors(c, outcome.gid)
    assert outcome.status is TxStatus.FAILED
    assert outcome.reason == "car.action gave up after 3 attempts: RuntimeError: the reader broke"
    assert errors == ["RuntimeError: the reader broke"] * 3
    assert [(b, op) for b, op, _ in participant.ops()] == [
        ("flight", "action"),
        *[("car", "action")] * 3,  # each answered, and its answer's reading raised
        ("flight", "compensate"),
    ]
    assert nothing_escaped(loop_errors)


async def test_a_compensation_that_always_raises_ends_stuck_with_its_error_for_all_to_see(
    log_url: str,
    participant: Participant,
    monkeypatch: pytest.MonkeyPatch,
    loop_errors: list[dict[str, Any]],
) -> None:
    raising_for("/flight/cancel", 99, monkeypatch)
    flight = participant.script("/flight", [(200, {})])
    car = participant.script("/car", [(409, {"message": "no cars"})])
    saga = Saga("trip")
    saga.step(
        "flight",
        action=HttpCall(flight),
        compensate=HttpCall(flight + "/cancel"),
        compensate_retry=FAST,
    )
    saga.step("car", action=HttpCall(car))
    async with Coordinator(log_url, poll_interval=0.05) as c:
        outcome = await (await c.submit(saga)).result(timeout=20)
        stuck = [t.gid for t in await c.list(TxQuery(stuck=True))]
    assert outcome.status is TxStatus.ABORTING
    assert outcome.stuck == (
        "compensation flight.compensate gave up after 3 attempts: RuntimeError: the reader broke"
    )
    assert stuck == [outcome.gid]
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "legato.cli", "tx", "list", "--stuck", "--json", "--log", log_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert [(t["gid"], t["stuck"]) for t in json.loads(listed.stdout)] == [
        (outcome.gid, outcome.stuck)
    ]
    assert nothing_escaped(loop_errors)


# -- callables (the local transport) ------------------------------------------------------


async def test_a_step_thread_ending_with_system_exit_is_an_unknown_outcome(
    log_url: str, loop_errors: list[dict[str, Any]]
) -> None:
    def car(ctx: object) -> None:
        raise SystemExit(3)

    undone: list[str] = []
    saga = Saga("trip")
    saga.step("flight", action=lambda ctx: "12A", compensate=lambda ctx: undone.append("flight"))
    saga.step("car", action=car, retry=FAST)  # no timeout: nothing else would end it
    async with Coordinator(log_url, poll_interval=0.05) as c:
        outcome = await (await c.submit(saga)).result(timeout=20)
    assert outcome.status is TxStatus.FAILED
    assert outcome.reason == "car.action gave up after 3 attempts: SystemExit: 3"
    assert undone == ["flight"]
    assert nothing_escaped(loop_errors)


async def test_a_transport_that_fails_to_start_an_attempt_leaves_it_unknown(
    log_url: str, monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    original = LocalTransport.start
    broken = failing(2, RuntimeError("the step pool is gone"), original)

    def start(self: LocalTransport, call: Any, attempt: Any, **kwargs: Any) -> Any:
        return (broken if attempt.branch == "car" else original)(self, call, attempt, **kwargs)

    monkeypatch.setattr(LocalTransport, "start", start)
    saga = Saga("trip")
    saga.step("flight", action=lambda ctx: "12A")
    saga.step("car", action=lambda ctx: "fiat", retry=FAST)
    async with Coordinator(log_url, poll_interval=0.05) as c:
        outcome = await (await c.submit(saga)).result(timeout=20)
        errors = await unknown_errors(c, outcome.gid)
    assert outcome.status is TxStatus.SUCCEEDED
    assert outcome.outputs == {"flight": "12A", "car": "fiat"}
    assert errors == ["RuntimeError: the step pool is gone"] * 2
    assert nothing_escaped(loop_errors)


async def test_an_error_text_is_stored_as_readable_text_on_every_log(
    any_log_url: str, loop_errors: list[dict[str, Any]]
) -> None:
    def car(ctx: object) -> None:
        raise ValueError("bad\x00byte \ud800 " + "x" * 5000)  # NUL, a lone surrogate, long

    saga = Saga("trip")
    saga.step("car", action=car, retry=FAST)
    async with Coordinator(any_log_url, poll_interval=0.05) as c:
        outcome = await (await c.submit(saga)).result(timeout=20)
        errors = await unknown_errors(c, outcome.gid)
    assert outcome.status is TxStatus.FAILED
    kept = 2000 - len("ValueError: bad\x00byte \ud800 ")  # at most 2000 characters, then …
    shown = "ValueError: bad\\x00byte \\ud800 " + "x" * kept + "…"
    assert errors == [shown] * 3
    assert nothing_escaped(loop_errors)


async def test_a_wire_saga_whose_definition_cannot_be_read_is_parked_stuck_with_its_ops(
    log_url: str, loop_errors: list[dict[str, Any]]
) -> None:
    # as a coordinator of a laxer version died leaving it, its first action in flight
    now = time.time()
    gid = f"wire-{uuid.uuid4().hex[:8]}"
    call = {"url": "http://127.0.0.1:1/pay", "headers": {"X-Tenant": "a\r\nb"}}
    spec = {"version": 1, "name": WIRE_SAGA, "steps": [{"name": "pay", "action": call}]}
    tx = TxRecord(gid, Mode.SAGA, WIRE_SAGA, "f", TxStatus.SUBMITTED, options={"spec": spec},
                  created_at=now, updated_at=now, next_attempt_at=now)  # fmt: skip
    pay = OpRecord(gid, "pay", OpName.ACTION, 0, "POST", OpStatus.RUNNING, 1, 1, updated_at=now)
    async with Coordinator(log_url, poll_interval=0.05) as c:
        await c.log.create(NewTransaction(tx, [pay]))
        async with asyncio.timeout(10):
            while not (stuck := await c.list(TxQuery(stuck=True))):
                await asyncio.sleep(0.02)
        _, ops = await c.get(gid)
    why = (
        f"the definition of {gid} in the log cannot be read: "
        "headers.X-Tenant: '\\r' is not allowed in a header value (printable ASCII only)"
    )
    assert [(t.gid, t.stuck) for t in stuck] == [(gid, why)]
    assert [(o.status, o.next_at, o.error) for o in ops] == [(OpStatus.RETRY_WAIT, None, why)]
    assert nothing_escaped(loop_errors)


# -- TCC and XA phase 2 -------------------------------------------------------------------


async def test_a_call_in_the_log_that_cannot_be_decoded_fails_its_attempts_not_the_rest(
    log_url: str, participant: Participant, loop_errors: list[dict[str, Any]]
) -> None:
    confirm = participant.script("/confirm", [(200, {})])
    async with Coordinator(log_url, poll_interval=0.05) as c:
        gid = await c.begin_tcc()
        now = time.time()
        unreadable = {"url": confirm, "headers": {"X-Tenant": "acme\r\nX-Evil: 1"}}
        await c.log.register(
            gid,
            [
                OpRecord(gid, "01", OpName.CONFIRM, 0, "POST", updated_at=now, payload=unreadable),
                OpRecord(gid, "01", OpName.CANCEL, 0, "POST", updated_at=now, payload=unreadable),
            ],
            now,
        )
        await c.register_tcc_branch(gid, "02", HttpCall(confirm), HttpCall(confirm))
        await c.submit_tcc(gid)
        op = await op_after(c, gid, ("01", OpName.CONFIRM), attempts=3)
        other = await op_after(c, gid, ("02", OpName.CONFIRM), attempts=1)
        await c.force_end(gid, TxStatus.FAILED)
    assert op.status is OpStatus.RETRY_WAIT
    assert op.error == (
        "confirm failed: DefinitionError: headers.X-Tenant: '\\r' is not allowed in a header "
        "value (printable ASCII only)"
    )
    assert other.status is OpStatus.SUCCEEDED
    assert nothing_escaped(loop_errors)


async def test_an_xa_commit_that_raises_is_retried_until_it_commits(
    log_url: str, monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    committed: list[str] = []

    def phase2(resource: Any, xid: Any, op: OpName, conns: Any = None) -> None:
        committed.append(f"{xid.gid}/{xid.branch_id} {op}")

    broken = failing(2, RuntimeError("the driver broke"), phase2)
    monkeypatch.setattr(legato.transports.xa, "phase2", broken)
    resources = {"bank": "postgresql://nobody@127.0.0.1:1/never"}  # phase2 never connects
    async with Coordinator(log_url, poll_interval=0.05, resources=resources, recover=False) as c:
        gid = await c.begin_xa()
        await c.register_xa_branch(gid, "01", "bank")
        outcome = await (await c.submit_tcc(gid)).result(timeout=20)
        errors = await unknown_errors(c, gid)
    assert outcome.status is TxStatus.SUCCEEDED
    assert errors == ["RuntimeError: the driver broke"] * 2
    assert committed == [f"{gid}/01 commit"]
    assert nothing_escaped(loop_errors)


# -- msg: the query and the deliveries, HTTP and broker ------------------------------------


async def test_a_msg_query_and_delivery_that_raise_are_asked_again_until_delivered(
    log_url: str,
    participant: Participant,
    monkeypatch: pytest.MonkeyPatch,
    loop_errors: list[dict[str, Any]],
) -> None:
    query = participant.script("/query", [(200, {"dtm_result": "SUCCESS"})])
    ship = participant.script("/ship", [(200, {})])
    raising_for("/query", 1, monkeypatch)
    async with Coordinator(log_url, poll_interval=0.05) as c:
        gid = await c.begin_msg(
            None,
            [HttpCall(ship, {"parcel": 1})],
            query_prepared=HttpCall(query),
            timeout_to_fail=0.2,
        )
        outcome = await c.handle(gid).result(timeout=20)  # its initiator never submits
        errors = await unknown_errors(c, gid)
    assert outcome.status is TxStatus.SUCCEEDED
    assert errors == ["RuntimeError: the reader broke"]
    assert len(participant.calls_to("/query")) == 2
    assert [c.body for c in participant.calls_to("/ship")] == [b'{"parcel":1}']
    raising_for("/ship", 2, monkeypatch)
    async with Coordinator(log_url, poll_interval=0.05) as c:
        gid = await c.begin_msg(None, [HttpCall(ship, {"parcel": 2})], timeout_to_fail=30)
        outcome = await (await c.submit_msg(gid)).result(timeout=20)
        errors = await unknown_errors(c, gid)
    assert outcome.status is TxStatus.SUCCEEDED
    assert errors == ["RuntimeError: the reader broke"] * 2
    assert nothing_escaped(loop_errors)


async def test_a_broker_delivery_that_raises_is_published_once_it_stops(
    log_url: str, monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    from legato.brokers import broker_from_url
    from legato.transports.broker import BrokerCall

    need_service("Redis", port_problem(6379))
    redis = "redis://127.0.0.1:6379/0"
    topic = f"t{uuid.uuid4().hex[:12]}"
    broker = broker_from_url(redis)
    await broker.connect()
    await broker.declare(topic, "shipping")
    broken = failing(2, RuntimeError("tracing broke"), broker_transport.BrokerTransport.publish)
    monkeypatch.setattr(broker_transport.BrokerTransport, "publish", broken)
    try:
        async with Coordinator(log_url, poll_interval=0.05, brokers={"events": redis}) as c:
            step = BrokerCall("events", topic, {"parcel": 1})
            gid = await c.begin_msg(None, [step], timeout_to_fail=30)
            outcome = await (await c.submit_msg(gid)).result(timeout=20)
            errors = await unknown_errors(c, gid)
        sub = await broker.subscribe(topic, "shipping", "s1")
        async with asyncio.timeout(15):
            delivery = await anext(aiter(sub))
        await delivery.ack()
        await sub.close()
    finally:
        await broker.delete(topic, ["shipping"])
        await broker.close()
    assert outcome.status is TxStatus.SUCCEEDED
    assert errors == ["RuntimeError: tracing broke"] * 2
    assert json.loads(delivery.message.body) == {"parcel": 1}
    assert nothing_escaped(loop_errors)
