"""Two-phase messages (msg) through DTM's API on ``legato serve``: the published Python
client (``dtmcli.msg``), an initiator that dies between its local transaction and its
submit (the coordinator asks its ``query_prepared``, which reads the msg barrier row
in a real SQLite database), deliveries retried until they succeed, and bad input."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dtmcli import msg as dtm_msg
from dtmcli import utils as dtm_utils
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legato.participant import Barrier, create_table, query_prepared
from tests.support.processes import Served, start_serve, stop_serve
from tests.support.scripted_participant import Participant, serve
from tests.support.services import need_service, port_problem


def wait_status(server: Served, gid: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        tx = httpx.get(f"{server.url}/v1/transactions/{gid}").json()
        if tx.get("status") in ("succeeded", "failed"):
            return tx  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, tx
        time.sleep(0.05)


def delivered(participant: Participant, path: str) -> list[bytes]:
    return [c.body for c in participant.calls_to(path)]


@pytest.fixture
def initiator_db(tmp_path: Path) -> str:
    path = str(tmp_path / "initiator.db")
    with sqlite3.connect(path) as conn:
        create_table(conn)
        conn.execute("CREATE TABLE orders (gid TEXT PRIMARY KEY)")
    return path


@pytest.fixture
def query_service(initiator_db: str) -> Iterator[str]:
    """The initiator's query_prepared endpoint: its msg barrier row says what happened."""

    async def endpoint(request: Request) -> JSONResponse:
        conn = sqlite3.connect(initiator_db)
        try:
            status = query_prepared(conn, request.query_params["gid"])
        finally:
            conn.close()
        if status == "committed":
            return JSONResponse({"dtm_result": "SUCCESS"})
        return JSONResponse({"dtm_result": "FAILURE", "message": "rolled back"}, 409)

    app = Starlette(routes=[Route("/query_prepared", endpoint, methods=["GET"])])
    with serve(app) as base:
        yield base + "/query_prepared"


def local_transaction(db: str, gid: str) -> None:
    """The initiator's business change, with the msg barrier row, committed."""
    conn = sqlite3.connect(db)
    try:
        Barrier.for_msg(gid).call(
            conn, lambda c: c.execute("INSERT INTO orders VALUES (?)", (gid,))
        )
    finally:
        conn.close()


def test_dtmcli_msg_delivers_every_branch(server: Served, participant: Participant) -> None:
    gid = dtm_utils.gen_gid(server.dtm)
    out = participant.script("/TransOut", [(200, {"dtm_result": "SUCCESS"})])
    in_ = participant.script("/TransIn", [(200, {"dtm_result": "SUCCESS"})])
    m = dtm_msg.Msg(server.dtm, gid).add({"amount": 30}, out).add({"amount": 30}, in_)
    m.prepare(participant.url + "/unused-query")
    m.submit()

    tx = wait_status(server, gid)
    assert tx["status"] == "succeeded" and tx["mode"] == "msg"
    assert (
        delivered(participant, "/TransOut")
        == delivered(participant, "/TransIn")
        == [b'{"amount": 30}']
    )
    call = participant.calls_to("/TransIn")[0]
    assert (call.params["trans_type"], call.params["branch_id"], call.params["op"]) == (
        "msg", "02", "action"
    )  # fmt: skip
    assert participant.calls_to("/unused-query") == []
    query = httpx.get(server.dtm + "/query", params={"gid": gid}).json()
    assert query["transaction"]["status"] == "succeed"
    assert query["transaction"]["trans_type"] == "msg"


def prepare(server: Served, gid: str, steps: list[str], query: str, timeout: float) -> None:
    body = {
        "gid": gid,
        "trans_type": "msg",
        "steps": [{"action": s} for s in steps],
        "payloads": [json.dumps({"order": gid}) for _ in steps],
        "query_prepared": query,
        "timeout_to_fail": timeout,
    }
    r = httpx.post(server.dtm + "/prepare", json=body)
    assert r.status_code == 200, r.text


def test_an_initiator_that_died_after_its_commit_has_its_message_delivered(
    server: Served, participant: Participant, initiator_db: str, query_service: str
) -> None:
    gid = f"msg-{uuid.uuid4().hex[:8]}"
    ship = participant.script("/ship", [(200, {"dtm_result": "SUCCESS"})])
    prepare(server, gid, [ship], query_service, timeout=1)
    local_transaction(initiator_db, gid)
    # ... and the initiator dies before it submits

    tx = wait_status(server, gid)
    assert tx["status"] == "succeeded"
    assert delivered(participant, "/ship") == [f'{{"order": "{gid}"}}'.encode()]
    ops = {(o["branch"], o["op"]): o["status"] for o in tx["ops"]}
    assert ops == {("00", "msg"): "succeeded", ("01", "action"): "succeeded"}


def test_an_initiator_whose_local_transaction_never_committed_has_its_message_dropped(
    server: Served, participant: Participant, initiator_db: str, query_service: str
) -> None:
    gid = f"msg-{uuid.uuid4().hex[:8]}"
    ship = participant.script("/ship", [(200, {"dtm_result": "SUCCESS"})])
    prepare(server, gid, [ship], query_service, timeout=1)
    # the initiator dies before its local transaction commits: no barrier row

    tx = wait_status(server, gid)
    assert tx["status"] == "failed" and "query_prepared" in tx["reason"]
    assert participant.calls_to("/ship") == []
    # and the local transaction, should it still try to commit, is refused by its row
    local_transaction(initiator_db, gid)
    with sqlite3.connect(initiator_db) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)


def test_a_delivery_that_fails_is_delivered_again_until_it_succeeds(
    server: Served, participant: Participant
) -> None:
    gid = f"msg-{uuid.uuid4().hex[:8]}"
    flaky = participant.script(
        "/notify",
        [(503, "down"), (409, {"dtm_result": "FAILURE"}), (200, {"dtm_result": "SUCCESS"})],
    )
    body = {"gid": gid, "trans_type": "msg", "steps": [{"action": flaky}], "payloads": ["{}"]}
    assert httpx.post(server.dtm + "/submit", json=body).status_code == 200  # no prepare

    tx = wait_status(server, gid)
    assert tx["status"] == "succeeded"
    assert len(participant.calls_to("/notify")) == 3


def test_an_aborted_message_is_never_delivered(server: Served, participant: Participant) -> None:
    gid = f"msg-{uuid.uuid4().hex[:8]}"
    ship = participant.script("/ship", [(200, {"dtm_result": "SUCCESS"})])
    prepare(server, gid, [ship], participant.url + "/q", timeout=30)
    r = httpx.post(server.dtm + "/abort", json={"gid": gid, "trans_type": "msg"})
    assert r.status_code == 200, r.text

    assert wait_status(server, gid)["status"] == "failed"
    r = httpx.post(server.dtm + "/submit", json={"gid": gid, "trans_type": "msg"})
    assert r.status_code == 409 and "FAILURE" in r.text  # too late: it failed
    assert participant.calls_to("/ship") == []


def test_a_bad_message_is_refused_naming_the_field(server: Served) -> None:
    base = {"gid": f"msg-{uuid.uuid4().hex[:8]}", "trans_type": "msg"}
    r = httpx.post(server.dtm + "/prepare", json={**base, "steps": []})
    assert r.status_code == 400 and "steps" in r.json()["message"]
    r = httpx.post(server.dtm + "/prepare", json={**base, "steps": [{"action": "ftp://x"}]})
    assert r.status_code == 400 and "steps.0.action" in r.json()["message"]
    bad = {**base, "steps": [{"action": "http://x/a"}], "query_prepared": "nope"}
    r = httpx.post(server.dtm + "/prepare", json=bad)
    assert r.status_code == 400 and "query_prepared" in r.json()["message"]
    assert httpx.get(f"{server.url}/v1/transactions/{base['gid']}").status_code == 404


async def test_a_message_branch_can_be_a_broker_topic(
    log_url: str, participant: Participant
) -> None:
    """``legato serve --broker events=redis://...``: a branch ``broker://events/<topic>``
    publishes the payload there, with the gid and a stable id (``<gid>/<branch>``)."""
    from legato.brokers import broker_from_url

    need_service("Redis", port_problem(6379))
    redis_url = "redis://127.0.0.1:6379/0"
    broker = broker_from_url(redis_url)
    await broker.connect()
    topic = f"t{uuid.uuid4().hex[:12]}"
    await broker.declare(topic, "shipping")
    served = start_serve(log_url, env={"LEGATO_BROKERS": json.dumps({"events": redis_url})})
    try:
        gid = f"msg-{uuid.uuid4().hex[:8]}"
        bill = participant.script("/bill", [(200, {"dtm_result": "SUCCESS"})])
        body = {
            "gid": gid,
            "trans_type": "msg",
            "steps": [{"action": bill}, {"action": f"broker://events/{topic}"}],
            "payloads": ['{"amount": 30}', '{"ship": "parcel-1"}'],
        }
        async with httpx.AsyncClient() as http:
            r = await http.post(served.dtm + "/submit", json=body)
            assert r.status_code == 200, r.text
            bad = {**body, "gid": gid + "-bad", "steps": [{"action": "broker://events/a b"}]}
            bad["payloads"] = ["{}"]
            r = await http.post(served.dtm + "/prepare", json=bad)
            assert r.status_code == 400 and "steps.0.action" in r.text, r.text
        sub = await broker.subscribe(topic, "shipping", "s1")
        async with asyncio.timeout(15):
            d = await anext(aiter(sub))
        await d.ack()
        await sub.close()
        assert d.message.id == f"{gid}/02" and d.message.key == gid
        assert d.message.headers["gid"] == gid and "traceparent" in d.message.headers
        assert json.loads(d.message.body) == {"ship": "parcel-1"}
        tx = await asyncio.to_thread(wait_status, served, gid)
        assert tx["status"] == "succeeded"
        assert delivered(participant, "/bill") == [b'{"amount": 30}']
    finally:
        stop_serve(served)
        await broker.delete(topic)
        await broker.close()


async def test_the_in_process_api_prepares_submits_and_aborts_messages(
    log_url: str, participant: Participant
) -> None:
    from legato import Coordinator, IllegalStateChange, TxStatus
    from legato.transports.http import HttpCall

    ship = participant.script("/ship", [(200, {"dtm_result": "SUCCESS"})])
    async with Coordinator(log_url, poll_interval=0.05) as c:
        gid = await c.begin_msg(None, [HttpCall(ship, {"parcel": 1})], timeout_to_fail=30)
        out = await (await c.submit_msg(gid)).result(timeout=20)
        assert out.status is TxStatus.SUCCEEDED
        dropped = await c.begin_msg(None, [HttpCall(ship, {"parcel": 2})], timeout_to_fail=30)
        out = await (await c.abort_msg(dropped)).result(timeout=20)
        assert out.status is TxStatus.FAILED
        tcc = await c.begin_tcc()
        with pytest.raises(IllegalStateChange, match="not a msg"):
            await c.submit_msg(tcc)
        await c.abort_tcc(tcc)
    assert [json.loads(b) for b in delivered(participant, "/ship")] == [{"parcel": 1}]
