"""The native API of ``legato serve``, as a real process, with a real participant."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from legato._throttle import MAX_FAILURES
from tests.support.processes import Served, start_serve, stop_serve
from tests.support.scripted_participant import Participant

FAILURE = (409, {"dtm_result": "FAILURE", "message": "sold out"})
FAST = {"max_attempts": 3, "backoff": 0.05, "jitter": 0}


def saga_body(p: Participant, gid: str, car: list[tuple[int, object]] | None = None) -> dict:
    steps = []
    for step in ("flight", "hotel", "car"):
        answers = car if (step == "car" and car) else [(200, {"booked": step})]
        steps.append(
            {
                "name": step,
                "action": p.script(f"/{step}", answers),
                "compensate": p.script(f"/{step}/cancel", [(200, {})]),
                "payload": {"trip": gid},
                "retry": FAST,
            }
        )
    return {"gid": gid, "steps": steps, "wait": True, "wait_timeout": 20}


def test_a_saga_submitted_over_http_runs_to_success_and_can_be_read_back(
    server: Served, participant: Participant
) -> None:
    r = httpx.post(server.url + "/v1/sagas", json=saga_body(participant, "api-1"), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert r.json()["outputs"]["car"] == {"booked": "car"}
    tx = httpx.get(server.url + "/v1/transactions/api-1").json()
    assert tx["status"] == "succeeded"
    assert tx["mode"] == "saga"
    assert [(o["branch"], o["op"], o["status"]) for o in tx["ops"] if o["op"] == "action"] == [
        ("flight", "action", "succeeded"),
        ("hotel", "action", "succeeded"),
        ("car", "action", "succeeded"),
    ]
    assert tx["ops"][0]["target"] == f"POST {participant.url}/flight"
    assert {e["kind"] for e in tx["events"]} >= {"submitted", "op.succeeded", "status"}


def test_a_failing_step_rolls_the_saga_back_and_the_list_filters_by_status(
    server: Served, participant: Participant
) -> None:
    r = httpx.post(
        server.url + "/v1/sagas", json=saga_body(participant, "api-2", car=[FAILURE]), timeout=30
    )
    assert r.json()["status"] == "failed"
    assert "sold out" in r.json()["reason"]
    httpx.post(server.url + "/v1/sagas", json=saga_body(participant, "api-3"), timeout=30)
    failed = httpx.get(server.url + "/v1/transactions", params={"status": "failed"}).json()
    assert [t["gid"] for t in failed["transactions"]] == ["api-2"]
    everything = httpx.get(server.url + "/v1/transactions", params={"limit": 1}).json()
    assert len(everything["transactions"]) == 1
    assert everything["next_offset"] == 1


def test_resubmitting_a_gid_is_idempotent_and_a_different_saga_under_it_is_refused(
    server: Served, participant: Participant
) -> None:
    body = saga_body(participant, "api-4")
    assert httpx.post(server.url + "/v1/sagas", json=body, timeout=30).status_code == 200
    assert httpx.post(server.url + "/v1/sagas", json=body, timeout=30).status_code == 200
    assert len(participant.calls_to("/flight")) == 1
    body["steps"][0]["action"] = participant.url + "/elsewhere"
    r = httpx.post(server.url + "/v1/sagas", json=body, timeout=30)
    assert r.status_code == 409
    assert "api-4" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda b: b["steps"][1].update(action="ftp://x/y"), ["steps", 1, "action"], "http(s)"),
        (lambda b: b["steps"].clear(), ["steps"], "at least 1 item"),
        (
            lambda b: b["steps"][0].update(retry={"max_attempts": 0}),
            ["steps", 0, "retry", "max_attempts"],
            "than or equal to 1",
        ),
        (lambda b: b.update(timeout_to_fail=-1), ["timeout_to_fail"], "greater than 0"),
        (lambda b: b.update(colour="red"), ["colour"], "xtra"),
        (lambda b: b["steps"][0].update(name="a b"), ["steps", 0, "name"], "letters"),
    ],
)
def test_bad_input_is_refused_with_a_422_naming_the_field_and_nothing_is_written(
    server: Served, participant: Participant, change: object, field: list, words: str
) -> None:
    body = saga_body(participant, "bad-1")
    change(body)  # type: ignore[operator]
    r = httpx.post(server.url + "/v1/sagas", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"] == ["body", *field] and words in d["msg"] for d in detail), detail
    assert httpx.get(server.url + "/v1/transactions").json()["transactions"] == []
    assert participant.calls == []


def test_a_definition_error_names_the_step(server: Served, participant: Participant) -> None:
    body = saga_body(participant, "bad-2")
    body["steps"][2]["depends_on"] = ["boat"]
    r = httpx.post(server.url + "/v1/sagas", json=body)
    assert r.status_code == 422
    assert r.json()["detail"] == "saga 'wire:saga', step 'car' depends on unknown step 'boat'"
    assert httpx.get(server.url + "/v1/transactions/bad-2").status_code == 404


def test_a_body_that_is_not_json_is_refused(server: Served) -> None:
    r = httpx.post(
        server.url + "/v1/sagas", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("the body is not JSON")


def test_health_and_openapi_are_served(server: Served) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok"
    assert health["unfinished"] == {"stuck": 0}
    # its leases renewed within a lease (15 s), none fenced
    assert health["leases"]["fenced"] == 0 and 0 <= health["leases"]["renewed_s_ago"] < 15
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v1/sagas", "/v1/transactions", "/v1/transactions/{gid}", "/health"} <= set(paths)
    assert "/api/dtmsvr/submit" in paths


@pytest.fixture
def guarded_server(log_url: str) -> Iterator[Served]:
    served = start_serve(log_url, env={"LEGATO_API_TOKEN": "s3cret"})
    try:
        yield served
    finally:
        stop_serve(served)


def test_with_a_token_set_every_call_needs_it_but_health_and_metrics(
    guarded_server: Served, participant: Participant
) -> None:
    url = guarded_server.url
    body = saga_body(participant, "tok-1")
    r = httpx.post(url + "/v1/sagas", json=body)
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["detail"]
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(url + "/v1/sagas", json=body, headers=wrong).status_code == 401
    assert httpx.post(url + "/api/dtmsvr/submit", json={"gid": "x"}).status_code == 401
    assert participant.calls == []
    good = {"Authorization": "Bearer s3cret"}
    assert httpx.post(url + "/v1/sagas", json=body, headers=good, timeout=30).status_code == 200
    # reads show payloads, outputs and errors: they need the token too
    for read in ("/v1/transactions/tok-1", "/v1/transactions", "/api/dtmsvr/query?gid=tok-1"):
        assert httpx.get(url + read).status_code == 401, read
        assert httpx.get(url + read, headers=good).status_code == 200, read
    for open_path in ("/health", "/metrics", "/api/ping"):
        assert httpx.get(url + open_path).status_code == 200, open_path
    for action in ("retry", "cancel", "abort"):
        assert httpx.post(url + f"/v1/transactions/tok-1/{action}").status_code == 401
    forced = httpx.post(url + "/v1/transactions/tok-1/force-end", json={"status": "failed"})
    assert forced.status_code == 401
    events = httpx.get(url + "/v1/transactions/tok-1", headers=good).json()["events"]
    assert not [e for e in events if e["kind"] == "requested"]  # nothing was recorded


def test_open_reads_let_a_trusted_network_read_without_the_token(
    log_url: str, participant: Participant
) -> None:
    served = start_serve(log_url, env={"LEGATO_API_TOKEN": "s3cret", "LEGATO_OPEN_READS": "1"})
    try:
        url = served.url
        body = saga_body(participant, "open-1")
        body["headers"] = {"X-Api-Key": "k-123"}
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(url + "/v1/sagas", json=body, headers=good, timeout=30).status_code == 200
        read = httpx.get(url + "/v1/transactions/open-1")
        assert read.status_code == 200
        assert read.json()["options"]["headers"] == ["X-Api-Key"]  # the name, never the value
        assert "k-123" not in read.text
        assert httpx.post(url + "/v1/transactions/open-1/retry").status_code == 401
    finally:
        stop_serve(served)


def test_too_many_wrong_tokens_from_one_address_are_refused_for_a_while(
    guarded_server: Served,
) -> None:
    url = guarded_server.url
    good = {"Authorization": "Bearer s3cret"}
    for _ in range(MAX_FAILURES + 5):  # no token at all is not a guess
        assert httpx.post(url + "/v1/transactions/nope/retry").status_code == 401
    assert httpx.post(url + "/v1/transactions/nope/retry", headers=good).status_code == 404
    wrong = {"Authorization": "Bearer guess"}
    for i in range(MAX_FAILURES - 1):
        assert httpx.post(url + f"/v1/transactions/g{i}/retry", headers=wrong).status_code == 401
    login = httpx.post(url + "/login", data={"token": "guess", "next": "/"})
    assert login.status_code == 401  # the dashboard's login counts in the same window
    # now the address is refused, even with the right token: the refusal tells nothing
    for headers in (wrong, good):
        r = httpx.post(url + "/v1/transactions/nope/retry", headers=headers)
        assert r.status_code == 429
        assert "too many wrong API tokens" in r.json()["detail"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    page = httpx.post(url + "/login", data={"token": "s3cret", "next": "/"})
    assert page.status_code == 429 and "Too many wrong tokens" in page.text
    assert "legato_dashboard" not in page.cookies
    assert httpx.get(url + "/health").status_code == 200  # health is never refused


def test_an_operator_can_abort_a_saga_in_flight_over_the_api(
    server: Served, participant: Participant
) -> None:
    body = saga_body(participant, "op-1")
    participant.script("/hotel", [(425, {"dtm_result": "ONGOING"})])  # never done
    body["wait"] = False
    assert httpx.post(server.url + "/v1/sagas", json=body).json()["status"] == "submitted"
    r = httpx.post(server.url + "/v1/transactions/op-1/cancel")
    assert r.status_code == 200
    for _ in range(200):
        tx = httpx.get(server.url + "/v1/transactions/op-1").json()
        if tx["status"] == "failed":
            break
        time.sleep(0.05)
    assert tx["status"] == "failed"
    # the request is recorded on the transaction, with who asked
    requested = [e for e in tx["events"] if e["kind"] == "requested"]
    assert [e["detail"] for e in requested] == [{"what": "abort", "by": "api"}]
    assert [op for b, op, _ in participant.ops() if b == "flight"] == ["action", "compensate"]
    assert httpx.post(server.url + "/v1/transactions/nope/abort").status_code == 404
