"""Sagas whose steps are HTTP participants (DESIGN section 5), against a real server.

The participant is a real uvicorn server whose answers each test scripts; the
coordinator runs in the test with the log LEGATO_TEST_LOG picks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re

import pytest

from legato import Coordinator, RetryPolicy, Saga, TxStatus
from legato.transports.http import HttpCall, classify
from tests.support.scripted_participant import Participant
from tests.support.servers import free_port

FAST = RetryPolicy(max_attempts=3, backoff=0.05, jitter=0.0, ongoing_interval=0.05)
OK = (200, {"dtm_result": "SUCCESS"})


def trip(p: Participant, name: str = "trip", **answers: list[tuple[int, object]]) -> Saga:
    saga = Saga(name)
    for step in ("flight", "hotel", "car"):
        action = p.script(f"/{step}", answers.get(step, [OK]))
        compensate = p.script(f"/{step}/cancel", answers.get(f"{step}_cancel", [OK]))
        saga.step(
            step,
            action=HttpCall(action, body={"step": step}),
            compensate=HttpCall(compensate, body={"step": step}),
            retry=FAST,
            compensate_retry=FAST,
        )
    return saga


async def test_each_action_is_posted_once_with_the_branch_in_the_query(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = trip(participant, flight=[(200, {"seat": "12A"})])
    outcome = await (await coordinator.submit(saga, gid="trip-1")).result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    assert outcome.outputs["flight"] == {"seat": "12A"}
    assert participant.ops() == [
        ("flight", "action", "/flight"),
        ("hotel", "action", "/hotel"),
        ("car", "action", "/car"),
    ]
    call = participant.calls_to("/flight")[0]
    assert call.params == {
        "gid": "trip-1",
        "trans_type": "saga",
        "branch_id": "flight",
        "op": "action",
    }
    assert json.loads(call.body) == {"step": "flight"}
    assert call.headers["content-type"] == "application/json"


async def test_every_call_carries_an_idempotency_key_a_traceparent_and_the_extra_headers(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = trip(participant, car=[(409, {"message": "sold out"})])
    handle = await coordinator.submit(saga, gid="trip-h", headers={"X-Tenant": "acme"})
    await handle.result(timeout=10)
    traces = set()
    for call in participant.calls:
        op = call.params["op"]
        assert call.headers["idempotency-key"] == f"trip-h/{call.params['branch_id']}/{op}"
        assert call.headers["x-tenant"] == "acme"
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", call.headers["traceparent"])
        assert m, call.headers["traceparent"]
        traces.add(m.group(1))
    assert len(traces) == 1, "every call of one transaction belongs to one trace"


async def test_a_409_rolls_back_every_step_that_started_in_reverse_order(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = trip(participant, car=[(409, {"dtm_result": "FAILURE", "message": "no cars"})])
    outcome = await (await coordinator.submit(saga, gid="trip-2")).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert "no cars" in (outcome.reason or "")
    assert [(b, op) for b, op, _ in participant.ops()] == [
        ("flight", "action"),
        ("hotel", "action"),
        ("car", "action"),
        ("car", "compensate"),
        ("hotel", "compensate"),
        ("flight", "compensate"),
    ]


async def test_a_failure_result_in_a_200_body_is_a_definite_failure(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = trip(participant, hotel=[(200, {"dtm_result": "FAILURE"})])
    outcome = await (await coordinator.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert len(participant.calls_to("/hotel")) == 1, "a definite failure is not retried"


async def test_ongoing_is_asked_again_at_the_interval_without_using_attempts(
    coordinator: Coordinator, participant: Participant
) -> None:
    not_yet = (425, {"dtm_result": "ONGOING"})
    saga = trip(participant, flight=[not_yet] * 6 + [OK])  # twice the 3 attempts allowed
    outcome = await (await coordinator.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    calls = participant.calls_to("/flight")
    assert len(calls) == 7
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.04


async def test_a_server_error_or_garbage_is_retried_with_backoff(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = trip(participant, hotel=[(500, "boom"), (502, "<html>bad gateway</html>"), OK])
    outcome = await (await coordinator.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    assert len(participant.calls_to("/hotel")) == 3
    events = await coordinator.events(outcome.gid)
    unknown = [e.detail["error"] for e in events if e.kind == "op.unknown"]
    assert unknown == ["HTTP 500: boom", "HTTP 502: <html>bad gateway</html>"]


async def test_a_participant_slower_than_its_timeout_is_retried(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = Saga("slow")
    slow = participant.script("/slow", [(200, {}, 1.0), OK])
    saga.step("s", action=HttpCall(slow, timeout=0.2), retry=FAST)
    outcome = await (await coordinator.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    assert len(participant.calls_to("/slow")) == 2
    events = await coordinator.events(outcome.gid)
    assert any("no answer within 0.2s" in e.detail.get("error", "") for e in events)


async def test_a_refused_connection_is_unknown_and_rolls_back_once_attempts_run_out(
    coordinator: Coordinator, participant: Participant
) -> None:
    saga = Saga("down")
    up = participant.script("/up", [OK])
    saga.step("up", action=HttpCall(up), compensate=HttpCall(up + "/cancel"), retry=FAST)
    down = f"http://127.0.0.1:{free_port()}/nobody"
    saga.step("down", action=HttpCall(down), retry=FAST)
    outcome = await (await coordinator.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert "gave up after 3 attempts" in (outcome.reason or "")
    assert "Cannot connect to host" in (outcome.reason or "")
    assert [op for _, op, _ in participant.ops()] == ["action", "compensate"]


async def test_a_compensation_answering_failure_is_retried_until_it_succeeds(
    coordinator: Coordinator, participant: Participant
) -> None:
    no = (409, {"dtm_result": "FAILURE"})
    saga = trip(participant, car=[no], hotel_cancel=[no, no, OK])
    outcome = await (await coordinator.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert len(participant.calls_to("/hotel/cancel")) == 3


async def test_a_portable_saga_is_resumed_by_a_coordinator_that_never_saw_its_definition(
    log_url: str, participant: Participant
) -> None:
    saga = trip(participant, name="wire:saga", hotel=[(200, {}, 1.5), OK])
    first = Coordinator(log_url, lease=0.5, poll_interval=0.05, owner="first")
    await first.start()
    handle = await first.submit(saga, gid="trip-moved")
    while not participant.calls_to("/hotel"):
        await asyncio.sleep(0.01)
    await first.stop()  # the hotel call is cut off; its outcome is unknown
    async with Coordinator(log_url, lease=0.5, poll_interval=0.05, owner="second") as second:
        outcome = await second.handle(handle.gid).result(timeout=15)
    assert outcome.status is TxStatus.SUCCEEDED
    assert [b for b, op, _ in participant.ops() if op == "action"].count("car") == 1


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b'{"dtm_result": "SUCCESS"}', "ok"),
        (204, b"", "ok"),
        (200, b"not json at all", "ok"),
        (409, b"", "failed"),
        (200, b'{"dtm_result": "FAILURE"}', "failed"),
        (425, b"", "ongoing"),
        (200, b'{"dtm_result": "ONGOING"}', "ongoing"),
        (500, b'{"dtm_result": "SUCCESS"}', "unknown"),
        (404, b"", "unknown"),
        (503, b"FAILURE", "unknown"),  # a substring decides nothing
        (200, b"the word FAILURE in a text body", "ok"),
    ],
)
def test_the_status_code_decides_and_the_json_field_comes_second(
    status: int, body: bytes, kind: str
) -> None:
    assert classify(status, body, {"content-type": "application/json"}).kind == kind
