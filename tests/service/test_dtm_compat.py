"""DTM's wire API: the published Python client (``dtmcli``) against ``legato serve``."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from dtmcli import saga as dtm_saga
from dtmcli import utils as dtm_utils

from tests.support.processes import Served
from tests.support.scripted_participant import Participant

FAILURE = (409, {"dtm_result": "FAILURE", "message": "insufficient balance"})


def wait_for_end(server: Served, gid: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(server.dtm + "/query", params={"gid": gid}).json()
        tx = body["transaction"]
        if tx is not None and tx["status"] in ("succeed", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def transfer(p: Participant, server: Served, trans_in: list[tuple[int, object]]) -> str:
    gid = dtm_utils.gen_gid(server.dtm)
    req = {"amount": 30}
    s = dtm_saga.Saga(server.dtm, gid)
    s.add(req, p.script("/TransOut", [(200, {})]), p.script("/TransOutCompensate", [(200, {})]))
    s.add(req, p.script("/TransIn", trans_in), p.script("/TransInCompensate", [(200, {})]))
    s.submit()
    return gid


def test_a_dtmcli_saga_runs_to_success(server: Served, participant: Participant) -> None:
    gid = transfer(participant, server, [(200, {"dtm_result": "SUCCESS"})])
    body = wait_for_end(server, gid)
    assert body["transaction"]["status"] == "succeed"
    assert body["transaction"]["trans_type"] == "saga"
    assert [(c.params["branch_id"], c.params["op"], c.path) for c in participant.calls] == [
        ("01", "action", "/TransOut"),
        ("02", "action", "/TransIn"),
    ]
    call = participant.calls[0]
    assert call.params["gid"] == gid
    assert call.params["trans_type"] == "saga"
    assert json.loads(call.body) == {"amount": 30}
    branches = {(b["branch_id"], b["op"]): b["status"] for b in body["branches"]}
    assert branches[("01", "action")] == "succeed"
    assert branches[("02", "action")] == "succeed"
    assert branches[("02", "compensate")] == "prepared"


def test_a_dtmcli_saga_rolls_back_when_a_branch_answers_failure(
    server: Served, participant: Participant
) -> None:
    gid = transfer(participant, server, [FAILURE])
    body = wait_for_end(server, gid)
    assert body["transaction"]["status"] == "failed"
    assert "insufficient balance" in body["transaction"]["rollback_reason"]
    assert [(c.params["branch_id"], c.params["op"]) for c in participant.calls] == [
        ("01", "action"),
        ("02", "action"),
        ("02", "compensate"),
        ("01", "compensate"),
    ]


def test_submit_with_wait_result_answers_failure_for_a_rolled_back_saga(
    server: Served, participant: Participant
) -> None:
    gid = "wait-1"
    body = {
        "gid": gid,
        "trans_type": "saga",
        "steps": [
            {"action": participant.script("/a", [(200, {})]), "compensate": participant.url + "/c"},
            {"action": participant.script("/b", [FAILURE]), "compensate": ""},
        ],
        "payloads": ['{"n": 1}', '{"n": 2}'],
        "wait_result": True,
        "custom_data": None,
        "unknown_field_from_a_newer_client": {"x": 1},
        "timeout_to_fail": None,
        "retry_interval": 0,
    }
    r = httpx.post(server.dtm + "/submit", json=body, timeout=30)
    assert r.status_code == 409
    assert r.json()["dtm_result"] == "FAILURE"
    with pytest.raises(dtm_utils.DTMFailureError):
        dtm_utils.check_result(r)  # as DTM's client reads it


def test_a_concurrent_saga_follows_its_orders(server: Served, participant: Participant) -> None:
    steps = [
        {"action": participant.script(f"/s{i}", [(200, {})]), "compensate": ""} for i in range(3)
    ]
    body = {
        "gid": "conc-1",
        "trans_type": "saga",
        "steps": steps,
        "payloads": ["{}", "{}", "{}"],
        "custom_data": json.dumps({"concurrent": True, "orders": {"2": [0, 1]}}),
    }
    assert httpx.post(server.dtm + "/submit", json=body).json() == {"dtm_result": "SUCCESS"}
    wait_for_end(server, "conc-1")
    order = [c.path for c in participant.calls]
    assert order[-1] == "/s2"
    assert sorted(order[:2]) == ["/s0", "/s1"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"gid": "", "trans_type": "saga"}, "field gid"),
        ({"gid": "g", "trans_type": "saga", "steps": []}, "field steps"),
        ({"gid": "g", "trans_type": "saga", "steps": [{"action": "nope"}]}, "steps.0.action"),
        ({"gid": "g", "trans_type": "saga", "steps": [{}], "payloads": []}, "steps.0.action"),
        (
            {
                "gid": "g",
                "trans_type": "saga",
                "steps": [{"action": "http://x/a"}],
                "payloads": ["1", "2"],
            },
            "field payloads",
        ),
        ({"gid": "g", "trans_type": "workflow"}, "field trans_type"),
        (
            {
                "gid": "g",
                "trans_type": "saga",
                "steps": [{"action": "http://x/a"}],
                "custom_data": "{",
            },
            "field custom_data",
        ),
    ],
)
def test_a_malformed_dtm_request_is_refused_naming_the_field(
    server: Served, body: dict, words: str
) -> None:
    r = httpx.post(server.dtm + "/submit", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]
    assert "FAILURE" not in r.text
    assert httpx.get(server.dtm + "/all").json()["transactions"] == []


def test_new_gid_query_all_and_ping_answer_as_dtm_does(
    server: Served, participant: Participant
) -> None:
    gid = transfer(participant, server, [(200, {})])
    wait_for_end(server, gid)
    r = httpx.get(server.dtm + "/newGid").json()
    assert r["dtm_result"] == "SUCCESS" and r["gid"]
    assert httpx.get(server.dtm + "/query", params={"gid": "nobody"}).json() == {
        "transaction": None,
        "branches": [],
    }
    listed = httpx.get(server.dtm + "/all", params={"status": "succeed", "limit": 10}).json()
    assert [t["gid"] for t in listed["transactions"]] == [gid]
    assert listed["next_position"] == ""
    assert httpx.get(server.url + "/api/ping").status_code == 200
