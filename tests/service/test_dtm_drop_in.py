"""What a team moving from DTM relies on (issue 17), against a real ``legato serve``:
DTM's published Python client (``dtmcli``) where it can say it, else raw HTTP shaped
like the calls DTM's own dashboard makes.

- a msg's steps are delivered one at a time, in order, each once the one before it
  has answered success; a step that fails is retried, forward, and holds back the
  ones after it; ``concurrent: true`` delivers them all at once;
- ``GET all?gid=G`` answers that transaction alone;
- ``GET query`` lists a msg's deliveries only (``op: action``), statuses as DTM's;
- the fields DTM always fills: ids, ``concurrent``, ``query_prepared``,
  ``custom_data`` as sent, a branch's payload as ``bin_data`` (base64, as DTM's JSON
  encodes bytes).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
from dtmcli import msg as dtm_msg
from dtmcli import saga as dtm_saga
from dtmcli import tcc as dtm_tcc
from dtmcli import utils as dtm_utils

from tests.support.processes import Served
from tests.support.scripted_participant import Call, Participant

OK = {"dtm_result": "SUCCESS"}
FAILURE = {"dtm_result": "FAILURE", "message": "not now"}


def query(server: Served, gid: str) -> dict[str, Any]:
    r = httpx.get(server.dtm + "/query", params={"gid": gid})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_for_end(server: Served, gid: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = query(server, gid)
        if body["transaction"] is not None and body["transaction"]["status"] in (
            "succeed",
            "failed",
        ):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def one(participant: Participant, path: str) -> Call:
    calls = participant.calls_to(path)
    assert len(calls) == 1, calls
    return calls[0]


def answered(call: Call) -> float:
    assert call.answered is not None
    return call.answered


# -- 1. a msg's steps: in order, one at a time, unless concurrent -----------------------


def test_a_msg_delivers_its_steps_one_at_a_time_in_order(
    server: Served, participant: Participant
) -> None:
    """Step 01 takes 0.5 s; step 02 must not begin before 01 has answered."""
    gid = dtm_utils.gen_gid(server.dtm)
    debit = participant.script("/debit", [(200, OK, 0.5)])
    notify = participant.script("/notify", [(200, OK, 0.2)])
    audit = participant.script("/audit", [(200, OK)])
    m = dtm_msg.Msg(server.dtm, gid)
    m.add({"n": 1}, debit).add({"n": 2}, notify).add({"n": 3}, audit)
    m.prepare(participant.url + "/query-prepared")
    m.submit()

    assert wait_for_end(server, gid)["transaction"]["status"] == "succeed"
    first, second, third = (one(participant, p) for p in ("/debit", "/notify", "/audit"))
    assert second.at >= answered(first), (first, second)
    assert third.at >= answered(second), (second, third)
    assert [c.params["branch_id"] for c in (first, second, third)] == ["01", "02", "03"]


def test_a_failing_msg_step_is_retried_forward_and_holds_back_the_steps_after_it(
    server: Served, participant: Participant
) -> None:
    """DTM never compensates a message: a step answering FAILURE (409) is delivered
    again until it succeeds, and the next step waits for that success."""
    gid = dtm_utils.gen_gid(server.dtm)
    debit = participant.script("/debit", [(200, OK)])
    notify = participant.script("/notify", [(409, FAILURE), (503, "down"), (200, OK)])
    audit = participant.script("/audit", [(200, OK)])
    m = dtm_msg.Msg(server.dtm, gid)
    m.add({"n": 1}, debit).add({"n": 2}, notify).add({"n": 3}, audit)
    m.prepare("")
    m.submit()

    body = wait_for_end(server, gid)
    assert body["transaction"]["status"] == "succeed"
    tries = participant.calls_to("/notify")
    assert len(tries) == 3
    assert one(participant, "/audit").at >= answered(tries[-1])
    assert {c.params["op"] for c in participant.calls} == {"action"}  # nothing undone
    assert [(b["branch_id"], b["op"], b["status"]) for b in body["branches"]] == [
        ("01", "action", "succeed"),
        ("02", "action", "succeed"),
        ("03", "action", "succeed"),
    ]


def test_a_concurrent_msg_delivers_its_steps_together(
    server: Served, participant: Participant
) -> None:
    gid = dtm_utils.gen_gid(server.dtm)
    slow = [participant.script(f"/slow{i}", [(200, OK, 0.5)]) for i in range(3)]
    m = dtm_msg.Msg(server.dtm, gid)
    for i, url in enumerate(slow):
        m.add({"n": i}, url)
    m.trans_base.concurrent = True  # what DTM's Go client's msg.Concurrent sets
    m.prepare(participant.url + "/query-prepared")
    m.submit()

    body = wait_for_end(server, gid)
    assert body["transaction"]["status"] == "succeed"
    assert body["transaction"]["concurrent"] is True
    calls = [one(participant, f"/slow{i}") for i in range(3)]
    first_answer = min(answered(c) for c in calls)
    assert all(c.at < first_answer for c in calls), calls  # all began before any answered


# -- 2. GET all?gid= -------------------------------------------------------------------


def test_all_with_a_gid_answers_that_transaction_alone(
    server: Served, participant: Participant
) -> None:
    gids = []
    for amount in (10, 20, 30):
        s = dtm_saga.Saga(server.dtm, dtm_utils.gen_gid(server.dtm))
        s.add({"amount": amount}, participant.url + "/TransOut", participant.url + "/Undo")
        s.submit()
        gids.append(s.trans_base.gid)
    for gid in gids:
        wait_for_end(server, gid)

    # as DTM's dashboard searches: every field of its form, the others empty
    search = {"position": "", "status": "", "transType": "", "limit": 10}
    search |= {"createTimeStart": "", "createTimeEnd": ""}
    page = httpx.get(server.dtm + "/all", params={**search, "gid": gids[1]}).json()
    assert [t["gid"] for t in page["transactions"]] == [gids[1]]
    assert page["next_position"] == ""
    assert page["transactions"][0] == query(server, gids[1])["transaction"]
    # DTM applies no other filter to a gid search
    other = {**search, "gid": gids[1], "status": "failed", "transType": "msg"}
    assert [t["gid"] for t in httpx.get(server.dtm + "/all", params=other).json()[
        "transactions"
    ]] == [gids[1]]  # fmt: skip
    nobody = httpx.get(server.dtm + "/all", params={**search, "gid": "nobody"}).json()
    assert nobody == {"transactions": [], "next_position": ""}
    bad = httpx.get(server.dtm + "/all", params={"gid": "a b"})
    assert bad.status_code == 400 and "gid" in bad.json()["message"]

    # without a gid, the filters and the paging are as they were
    first = httpx.get(server.dtm + "/all", params={"status": "succeed", "limit": 2}).json()
    assert [t["gid"] for t in first["transactions"]] == [gids[2], gids[1]]
    assert first["next_position"] == "2"
    rest = httpx.get(
        server.dtm + "/all", params={"status": "succeed", "limit": 2, "position": "2"}
    ).json()
    assert [t["gid"] for t in rest["transactions"]] == [gids[0]]
    assert rest["next_position"] == ""
    assert httpx.get(server.dtm + "/all", params={"transType": "msg"}).json()[
        "transactions"
    ] == []  # fmt: skip


# -- 3. GET query for a msg ------------------------------------------------------------


def msg_body(gid: str, participant: Participant, **more: Any) -> dict[str, Any]:
    return {
        "gid": gid,
        "trans_type": "msg",
        "steps": [{"action": participant.url + "/ship"}, {"action": participant.url + "/bill"}],
        "payloads": ['{"parcel": 1}', '{"amount": 30}'],
        "query_prepared": participant.url + "/query-prepared",
        **more,
    }


def branches(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(b["branch_id"], b["op"], b["status"]) for b in body["branches"]]


def test_query_lists_a_msgs_deliveries_only_with_dtms_statuses(
    server: Served, participant: Participant
) -> None:
    gid = f"msg-{uuid.uuid4().hex[:8]}"
    assert httpx.post(server.dtm + "/prepare", json=msg_body(gid, participant)).status_code == 200
    prepared = query(server, gid)
    assert prepared["transaction"]["status"] == "prepared"
    assert branches(prepared) == [("01", "action", "prepared"), ("02", "action", "prepared")]
    r = httpx.post(server.dtm + "/submit", json={"gid": gid, "trans_type": "msg"})
    assert r.status_code == 200, r.text
    done = wait_for_end(server, gid)
    assert done["transaction"]["status"] == "succeed"
    assert branches(done) == [("01", "action", "succeed"), ("02", "action", "succeed")]
    assert all(b["finish_time"] for b in done["branches"])

    # dropped before it was delivered: failed, its branches never run (DTM: prepared)
    dropped = f"msg-{uuid.uuid4().hex[:8]}"
    httpx.post(server.dtm + "/prepare", json=msg_body(dropped, participant))
    httpx.post(server.dtm + "/abort", json={"gid": dropped, "trans_type": "msg"})
    gone = wait_for_end(server, dropped)
    assert gone["transaction"]["status"] == "failed"
    assert branches(gone) == [("01", "action", "prepared"), ("02", "action", "prepared")]


def test_query_shows_no_branch_for_a_msgs_question_to_its_initiator(
    server: Served, participant: Participant
) -> None:
    """The initiator died before its submit: Legato asks its query_prepared (which
    answers that it committed) and delivers; still no ``00``/``msg`` branch."""
    gid = f"msg-{uuid.uuid4().hex[:8]}"
    participant.script("/query-prepared", [(200, OK)])
    body = msg_body(gid, participant, timeout_to_fail=1)
    assert httpx.post(server.dtm + "/prepare", json=body).status_code == 200
    done = wait_for_end(server, gid)
    assert done["transaction"]["status"] == "succeed"
    assert len(participant.calls_to("/query-prepared")) == 1
    assert branches(done) == [("01", "action", "succeed"), ("02", "action", "succeed")]
    assert done["transaction"]["query_prepared"] == participant.url + "/query-prepared"


# -- 4. the fields DTM always fills ----------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_msg_has_the_fields_dtm_fills(server: Served, participant: Participant) -> None:
    gid = dtm_utils.gen_gid(server.dtm)
    custom = json.dumps({"name": "ship order 7", "team": "logistics"})
    m = dtm_msg.Msg(server.dtm, gid)
    m.add({"parcel": 7}, participant.url + "/ship").add({"amount": 30}, participant.url + "/bill")
    m.trans_base.custom_data = custom
    m.prepare(participant.url + "/query-prepared")
    m.submit()
    body = wait_for_end(server, gid)

    tx = body["transaction"]
    assert isinstance(tx["id"], int) and tx["id"] > 0
    assert tx["concurrent"] is False
    assert tx["query_prepared"] == participant.url + "/query-prepared"
    assert tx["custom_data"] == custom
    assert tx["protocol"] == "http"
    assert tx["steps"] == [
        {"action": participant.url + "/ship"},
        {"action": participant.url + "/bill"},
    ]
    assert tx["payloads"] == ['{"parcel": 7}', '{"amount": 30}']
    assert [b["bin_data"] for b in body["branches"]] == [
        b64('{"parcel": 7}'),
        b64('{"amount": 30}'),
    ]
    ids = [b["id"] for b in body["branches"]]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == 2
    assert "data" not in body["branches"][0]
    # the same ids on every read, in the list too
    again = query(server, gid)
    assert again["transaction"]["id"] == tx["id"] and [b["id"] for b in again["branches"]] == ids
    listed = httpx.get(server.dtm + "/all", params={"gid": gid}).json()["transactions"][0]
    assert listed["id"] == tx["id"] and listed["custom_data"] == custom
    assert listed["query_prepared"] == tx["query_prepared"]


def test_a_saga_has_the_fields_dtm_fills_and_is_named_by_custom_data(
    server: Served, participant: Participant
) -> None:
    gid = f"saga-{uuid.uuid4().hex[:8]}"
    custom = json.dumps({"name": "transfer 30", "concurrent": True, "orders": {"1": [0]}})
    body = {
        "gid": gid,
        "trans_type": "saga",
        "steps": [
            {"action": participant.url + "/TransOut", "compensate": participant.url + "/OutUndo"},
            {"action": participant.url + "/TransIn", "compensate": participant.url + "/InUndo"},
        ],
        "payloads": ['{"amount": 30}', '{"amount": 31}'],
        "custom_data": custom,
        "concurrent": True,  # as dtmcli's Saga.set_concurrent sends it
    }
    assert httpx.post(server.dtm + "/submit", json=body).status_code == 200
    done = wait_for_end(server, gid)
    tx = done["transaction"]
    assert tx["custom_data"] == custom and tx["concurrent"] is True
    assert tx["query_prepared"] == ""
    # DTM's order: each branch's compensate row, then its action row
    assert [(b["branch_id"], b["op"], b["status"]) for b in done["branches"]] == [
        ("01", "compensate", "prepared"),
        ("01", "action", "succeed"),
        ("02", "compensate", "prepared"),
        ("02", "action", "succeed"),
    ]
    assert [b["bin_data"] for b in done["branches"]] == [
        b64('{"amount": 30}'),
        b64('{"amount": 30}'),
        b64('{"amount": 31}'),
        b64('{"amount": 31}'),
    ]
    native = httpx.get(f"{server.url}/v1/transactions/{gid}").json()
    assert native["title"] == "transfer 30"  # the readable name still reads custom_data.name


def test_a_tcc_branch_has_its_data_as_bin_data(server: Served, participant: Participant) -> None:
    gid = dtm_utils.gen_gid(server.dtm)
    try_url = participant.url + "/TransOutTry"

    def body(t: dtm_tcc.Tcc) -> None:
        t.call_branch(
            {"amount": 30}, try_url, participant.url + "/Confirm", participant.url + "/Cancel"
        )

    dtm_tcc.tcc_global_transaction(server.dtm, gid, body)
    done = wait_for_end(server, gid)
    assert done["transaction"]["status"] == "succeed"
    assert done["transaction"]["id"] > 0 and done["transaction"]["concurrent"] is False
    assert [(b["branch_id"], b["op"], b["status"]) for b in done["branches"]] == [
        ("01", "cancel", "prepared"),
        ("01", "confirm", "succeed"),
    ]
    data = json.loads(base64.b64decode(done["branches"][1]["bin_data"]))
    assert data == {"amount": 30}


def test_dtms_version_and_old_client_paths_answer(server: Served) -> None:
    version = httpx.get(server.dtm + "/version")
    assert version.status_code == 200 and version.json()["version"].startswith("legato-")
    r = httpx.post(server.dtm + "/prepare", json={"gid": "xa-old-client", "trans_type": "xa"})
    assert r.status_code == 200, r.text
    branch = {"gid": "xa-old-client", "branch_id": "01", "trans_type": "xa"}
    branch["url"] = "http://127.0.0.1:9/xa"
    r = httpx.post(server.dtm + "/registerXaBranch", json=branch)  # DTM's older clients
    assert r.status_code == 200, r.text
    assert [(b["branch_id"], b["op"]) for b in query(server, "xa-old-client")["branches"]] == [
        ("01", "rollback"),
        ("01", "commit"),
    ]
