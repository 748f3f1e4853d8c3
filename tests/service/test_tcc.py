"""TCC over HTTP (DESIGN section 4): the Python initiator API, the native API and
DTM's client, each against real participant and coordinator servers."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from dtmcli import tcc as dtm_tcc
from dtmcli import utils as dtm_utils

import legato
from legato import Coordinator, TxStatus
from legato.transports.http import HttpCall
from tests.support.processes import Served
from tests.support.scripted_participant import Participant

NO = (409, {"dtm_result": "FAILURE", "message": "no funds"})


def urls(p: Participant, branch: str, try_answer: list | None = None) -> tuple[str, str, str]:
    return (
        p.script(f"/{branch}/try", try_answer or [(200, {"held": branch})]),
        p.script(f"/{branch}/confirm", [(200, {})]),
        p.script(f"/{branch}/cancel", [(200, {})]),
    )


def calls(p: Participant) -> list[tuple[str, str]]:
    return [(c.params["branch_id"], c.params["op"]) for c in p.calls]


async def test_a_tcc_whose_tries_all_succeed_confirms_every_branch(
    coordinator: Coordinator, participant: Participant
) -> None:
    async with coordinator.tcc() as t:
        held = await t.call(*urls(participant, "out"), {"amount": 30})
        await t.call(*urls(participant, "in"), {"amount": 30})
    assert held == {"held": "out"}
    assert t.handle is not None
    outcome = await t.handle.result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    assert calls(participant)[:2] == [("01", "try"), ("02", "try")]
    assert sorted(calls(participant)[2:]) == [("01", "confirm"), ("02", "confirm")]
    confirm = participant.calls_to("/out/confirm")[0]
    assert confirm.params["trans_type"] == "tcc"
    assert confirm.body == b'{"amount":30}'
    assert confirm.headers["idempotency-key"] == f"{t.gid}/01/confirm"


async def test_a_failed_try_cancels_every_registered_branch_newest_first(
    coordinator: Coordinator, participant: Participant
) -> None:
    with pytest.raises(legato.Failure, match="try of branch 02 failed: HTTP 409: no funds"):
        async with coordinator.tcc() as t:
            await t.call(*urls(participant, "out"))
            await t.call(*urls(participant, "in", [NO]))
            await t.call(*urls(participant, "never"))
    assert t.handle is not None
    outcome = await t.handle.result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert "no funds" in (outcome.reason or "")
    assert calls(participant) == [
        ("01", "try"),
        ("02", "try"),
        ("02", "cancel"),  # its try may have half-happened: the barrier decides
        ("01", "cancel"),
    ]


async def test_a_tcc_left_prepared_past_its_timeout_is_cancelled_by_the_coordinator(
    coordinator: Coordinator, participant: Participant
) -> None:
    gid = await coordinator.begin_tcc(timeout_to_fail=0.5)
    _, confirm, cancel = urls(participant, "out")
    await coordinator.register_tcc_branch(gid, "01", HttpCall(confirm), HttpCall(cancel))
    # ... and the initiator dies here, without submitting or aborting
    outcome = await coordinator.handle(gid).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert outcome.reason == "timed out (timeout_to_fail)"
    assert calls(participant) == [("01", "cancel")]


async def test_no_branch_is_registered_after_submit_and_no_abort_after_submit(
    coordinator: Coordinator, participant: Participant
) -> None:
    async with coordinator.tcc() as t:
        await t.call(*urls(participant, "out"))
    assert t.handle is not None
    await t.handle.result(timeout=10)
    _, confirm, cancel = urls(participant, "late")
    with pytest.raises(legato.IllegalStateChange, match="cannot register"):
        await coordinator.register_tcc_branch(t.gid, "02", HttpCall(confirm), HttpCall(cancel))
    with pytest.raises(legato.IllegalStateChange, match="cannot abort"):
        await coordinator.abort_tcc(t.gid)
    await coordinator.submit_tcc(t.gid)  # a repeated submit is fine


async def test_a_confirm_that_keeps_failing_is_retried_not_dropped(
    coordinator: Coordinator, participant: Participant
) -> None:
    try_url, _, cancel = urls(participant, "out")
    confirm = participant.script("/out/confirm", [NO, (500, "oops"), (200, {})])
    async with coordinator.tcc() as t:
        await t.call(try_url, confirm, cancel)
    assert t.handle is not None
    outcome = await t.handle.result(timeout=15)
    assert outcome.status is TxStatus.SUCCEEDED
    assert len(participant.calls_to("/out/confirm")) == 3


# -- over HTTP: the native API and DTM's client -------------------------------------------


def wait_status(server: Served, gid: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        tx = httpx.get(f"{server.url}/v1/transactions/{gid}").json()
        if tx.get("status") in ("succeeded", "failed"):
            return tx
        assert time.monotonic() < deadline, tx
        time.sleep(0.05)


def test_the_native_api_runs_a_tcc(server: Served, participant: Participant) -> None:
    gid = httpx.post(server.url + "/v1/tcc", json={"timeout_to_fail": 30}).json()["gid"]
    for name in ("out", "in"):
        try_url, confirm, cancel = urls(participant, name)
        r = httpx.post(
            f"{server.url}/v1/tcc/{gid}/branches",
            json={"confirm": confirm, "cancel": cancel, "payload": {"n": 1}},
        )
        assert r.status_code == 200, r.text
        httpx.post(try_url, params={"gid": gid, "branch_id": r.json()["branch_id"], "op": "try"})
    r = httpx.post(f"{server.url}/v1/tcc/{gid}/submit", json={"wait": True}, timeout=30)
    assert r.json()["status"] == "succeeded"
    assert sorted(b for b, op in calls(participant) if op == "confirm") == ["01", "02"]
    r = httpx.post(f"{server.url}/v1/tcc/{gid}/branches", json={"confirm": "x", "cancel": "y"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "confirm"]


def test_dtmcli_tcc_runs_to_success(server: Served, participant: Participant) -> None:
    gid = dtm_utils.gen_gid(server.dtm)

    def branches(t: dtm_tcc.Tcc) -> None:
        t.call_branch({"amount": 30}, *urls(participant, "TransOut"))
        t.call_branch({"amount": 30}, *urls(participant, "TransIn"))

    assert dtm_tcc.tcc_global_transaction(server.dtm, gid, branches) == gid
    tx = wait_status(server, gid)
    assert tx["status"] == "succeeded"
    assert calls(participant)[:2] == [("01", "try"), ("02", "try")]
    assert sorted(calls(participant)[2:]) == [("01", "confirm"), ("02", "confirm")]
    query = httpx.get(server.dtm + "/query", params={"gid": gid}).json()
    assert query["transaction"]["status"] == "succeed"
    assert query["transaction"]["trans_type"] == "tcc"
    assert {(b["branch_id"], b["op"], b["status"]) for b in query["branches"]} >= {
        ("01", "confirm", "succeed"),
        ("02", "confirm", "succeed"),
    }


def test_dtmcli_tcc_rolls_back_when_a_try_fails(server: Served, participant: Participant) -> None:
    gid = dtm_utils.gen_gid(server.dtm)

    def branches(t: dtm_tcc.Tcc) -> None:
        t.call_branch({"amount": 30}, *urls(participant, "TransOut"))
        t.call_branch({"amount": 30}, *urls(participant, "TransIn", [NO]))

    assert dtm_tcc.tcc_global_transaction(server.dtm, gid, branches) == ""
    tx = wait_status(server, gid)
    assert tx["status"] == "failed"
    assert calls(participant) == [
        ("01", "try"),
        ("02", "try"),
        ("02", "cancel"),
        ("01", "cancel"),
    ]
    cancel = participant.calls_to("/TransOut/cancel")[0]
    assert cancel.body == b'{"amount": 30}'  # the data the client registered, as it sent it


def test_dtm_registering_into_a_finished_tcc_answers_409_failure(
    server: Served, participant: Participant
) -> None:
    gid = "tcc-late"
    assert (
        httpx.post(server.dtm + "/prepare", json={"gid": gid, "trans_type": "tcc"}).status_code
        == 200
    )
    assert (
        httpx.post(server.dtm + "/submit", json={"gid": gid, "trans_type": "tcc"}).status_code
        == 200
    )
    wait_status(server, gid)
    r = httpx.post(
        server.dtm + "/registerBranch",
        json={
            "gid": gid,
            "branch_id": "01",
            "trans_type": "tcc",
            "status": "prepared",
            "data": "{}",
            "confirm": participant.url + "/c",
            "cancel": participant.url + "/x",
        },
    )
    assert r.status_code == 409
    assert r.json()["dtm_result"] == "FAILURE"
    r = httpx.post(server.dtm + "/abort", json={"gid": gid, "trans_type": "tcc"})
    assert r.status_code == 409


async def test_the_in_process_initiator_sees_the_same_transaction_as_the_server(
    log_url: str, participant: Participant
) -> None:
    # two coordinators on one log: one begins and submits, the other may drive it
    async with (
        Coordinator(log_url, poll_interval=0.05) as a,
        Coordinator(log_url, poll_interval=0.05) as b,
    ):
        async with a.tcc() as t:
            await t.call(*urls(participant, "out"))
        outcome = await b.handle(t.gid).result(timeout=10)
        assert outcome.status is TxStatus.SUCCEEDED
        await asyncio.sleep(0.2)
    assert [op for _, op in calls(participant)].count("confirm") == 1
