"""``legato serve`` probed as an attacker or a careless client would (issue 12).

Each test reproduces one row of the issue's table against a real ``legato serve``
process and a real participant, and checks the refusal (a 4xx naming what is
wrong, never a 5xx or a reset connection), that nothing was written for it, and
that nothing secret leaks.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.processes import Served, start_serve, stop_serve
from tests.support.scripted_participant import Participant
from tests.support.servers import free_port

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = {"max_attempts": 2, "backoff": 0.05, "jitter": 0}


def saga_body(p: Participant, gid: str, **extra: Any) -> dict[str, Any]:
    steps = [
        {
            "name": step,
            "action": p.script(f"/{gid}/{step}", [(200, {"booked": step})]),
            "compensate": p.script(f"/{gid}/{step}/cancel", [(200, {})]),
            "payload": {"trip": gid},
            "retry": FAST,
        }
        for step in ("flight", "hotel")
    ]
    return {"gid": gid, "steps": steps, "wait": True, "wait_timeout": 20, **extra}


def dtm_saga(p: Participant, gid: str, **extra: Any) -> dict[str, Any]:
    return {
        "gid": gid,
        "trans_type": "saga",
        "steps": [{"action": p.script(f"/{gid}/a", [(200, {})]), "compensate": p.url + "/c"}],
        "payloads": ['{"amount": 30}'],
        **extra,
    }


def gids(server: Served) -> list[str]:
    """Every transaction the server's log holds (through its API, with the token)."""
    r = httpx.get(server.url + "/v1/transactions?limit=1000", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return [t["gid"] for t in r.json()["transactions"]]


def assert_no_5xx(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"


@pytest.fixture
def guarded(log_url: str) -> Iterator[Served]:
    served = start_serve(log_url, env={"LEGATO_API_TOKEN": TOKEN})
    try:
        yield served
    finally:
        stop_serve(served)


# -- row 2: CR/LF where a header is made -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "change"),
    [
        ("/v1/sagas", {"headers": {"X-A": "a\r\nX-Evil: 1"}}),
        ("/v1/sagas", {"gid": "g\r\nX-Evil: 1"}),
        ("/v1/sagas", {"headers": {"X-A\r\nB": "v"}}),
    ],
    ids=["header value", "gid", "header name"],
)
def test_crlf_in_a_header_or_a_gid_is_refused_before_anything_is_written(
    guarded: Served, participant: Participant, path: str, change: dict[str, Any]
) -> None:
    body = {**saga_body(participant, "crlf-1"), **change}
    r = httpx.post(guarded.url + path, json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert gids(guarded) == []
    assert participant.calls == []


def test_crlf_in_a_dtm_branch_id_is_refused(guarded: Served, participant: Participant) -> None:
    dtm = guarded.dtm
    r = httpx.post(dtm + "/prepare", json={"gid": "tcc-crlf", "trans_type": "tcc"}, headers=AUTH)
    assert r.status_code == 200, r.text
    branch = {
        "gid": "tcc-crlf",
        "branch_id": "01\r\nX-Evil: 1",
        "trans_type": "tcc",
        "confirm": participant.url + "/confirm",
        "cancel": participant.url + "/cancel",
    }
    r = httpx.post(dtm + "/registerBranch", json=branch, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["message"].startswith("field branch_id: ")
    tx = httpx.get(guarded.url + "/v1/transactions/tcc-crlf", headers=AUTH).json()
    assert tx["ops"] == []


# -- row 3: secrets ------------------------------------------------------------------------


def test_header_values_and_url_credentials_are_never_shown(
    guarded: Served, participant: Participant
) -> None:
    body = saga_body(participant, "sec-1", headers={"X-Api-Key": "k-secret-123"})
    flight = body["steps"][0]
    flight["action"] = flight["action"].replace("http://", "http://svc:pw-secret@")
    r = httpx.post(guarded.url + "/v1/sagas", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    # the participant got them: they are stored to be used, only never shown
    call = participant.calls_to("/sec-1/flight")[0]
    assert call.headers["x-api-key"] == "k-secret-123"
    assert call.headers["authorization"].startswith("Basic ")

    one = httpx.get(guarded.url + "/v1/transactions/sec-1", headers=AUTH)
    assert one.json()["options"]["headers"] == ["X-Api-Key"]
    assert "http://svc:***@" in one.text
    shown = [
        one.text,
        httpx.get(guarded.url + "/v1/transactions", headers=AUTH).text,
        httpx.get(guarded.dtm + "/query?gid=sec-1", headers=AUTH).text,
        httpx.get(guarded.dtm + "/all", headers=AUTH).text,
        httpx.get(guarded.url + "/tx/sec-1", headers=AUTH).text,
        httpx.get(guarded.url + "/", headers=AUTH).text,
        _cli(guarded.log, "tx", "show", "sec-1", "--json"),
        _cli(guarded.log, "tx", "show", "sec-1"),
        _cli(guarded.log, "tx", "list", "--json"),
    ]
    for text in shown:
        assert "k-secret-123" not in text
        assert "pw-secret" not in text


def _cli(log: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "legato.cli", *args, "--log", log],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_api_token_is_never_stored_nor_passed_to_a_participant(
    guarded: Served, participant: Participant
) -> None:
    passthrough = dtm_saga(participant, "tok-pass", passthrough_headers=["Authorization"])
    r = httpx.post(guarded.dtm + "/submit", json=passthrough, headers=AUTH)
    assert r.status_code == 400
    assert "Legato's own API token" in r.json()["message"]
    headers = dtm_saga(participant, "tok-head", branch_headers={"X-Token": TOKEN})
    assert httpx.post(guarded.dtm + "/submit", json=headers, headers=AUTH).status_code == 400
    native = saga_body(participant, "tok-native", headers={"X-Forward": f"Bearer {TOKEN}"})
    r = httpx.post(guarded.url + "/v1/sagas", json=native, headers=AUTH)
    assert r.status_code == 422
    assert "Legato's own API token" in r.json()["detail"]
    assert gids(guarded) == []
    assert participant.calls == []


# -- row 4: browsers forging calls ---------------------------------------------------------


def test_a_cross_site_post_is_refused_by_content_type_and_by_origin(
    server: Served, participant: Participant
) -> None:
    body = json.dumps(dtm_saga(participant, "csrf-1"))
    for path in ("/api/dtmsvr/submit", "/v1/sagas"):
        plain = httpx.post(
            server.url + path,
            content=body,
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
        assert plain.status_code in (403, 415), plain.text
        as_text = httpx.post(
            server.url + path, content=body, headers={"Content-Type": "text/plain"}
        )
        assert as_text.status_code == 415
        assert "application/json" in as_text.text
        evil = httpx.post(
            server.url + path,
            content=body,
            headers={"Content-Type": "application/json", "Origin": "http://evil.example"},
        )
        assert evil.status_code == 403
        assert "another site" in evil.text
        no_body = httpx.post(
            server.url + "/v1/transactions/csrf-1/retry", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert no_body.status_code == 403
    assert httpx.get(server.url + "/v1/transactions").json()["transactions"] == []
    assert participant.calls == []
    own = httpx.post(
        server.url + "/api/dtmsvr/submit",
        content=body,
        headers={"Content-Type": "application/json", "Origin": server.url},
    )
    assert own.status_code == 200, own.text


# -- row 5: where the coordinator may call ------------------------------------------------


def test_a_participant_outside_the_allow_list_is_refused_at_submit(
    log_url: str, participant: Participant
) -> None:
    port = participant.url.rsplit(":", 1)[1]
    served = start_serve(
        log_url, env={"LEGATO_API_TOKEN": TOKEN, "LEGATO_PARTICIPANTS": f"127.0.0.1:{port}"}
    )
    try:
        msg = {
            "gid": "msg-internal",
            "trans_type": "msg",
            "steps": [{"action": participant.url + "/deliver"}],
            "payloads": ["{}"],
            "query_prepared": "http://127.0.0.1:1/admin/secrets",
        }
        r = httpx.post(served.dtm + "/prepare", json=msg, headers=AUTH)
        assert r.status_code == 400
        assert "query_prepared" in r.json()["message"]
        assert "allow-list" in r.json()["message"]
        scan = saga_body(participant, "scan-1")
        scan["steps"][0]["action"] = "http://127.0.0.1:1/"
        r = httpx.post(served.url + "/v1/sagas", json=scan, headers=AUTH)
        assert r.status_code == 422
        assert "127.0.0.1:1" in r.json()["detail"]
        assert gids(served) == []
        ok = httpx.post(
            served.url + "/v1/sagas", json=saga_body(participant, "ok-1"), headers=AUTH, timeout=30
        )
        assert ok.json()["status"] == "succeeded"
        # and what a participant answered is no one's to read without the token
        assert httpx.get(served.url + "/v1/transactions/ok-1").status_code == 401
    finally:
        stop_serve(served)


# -- row 6: DTM's numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_to_fail", 1e300),
        ("retry_interval", 1e12),
        ("retry_limit", 10**12),
        ("request_timeout", -1),
        ("timeout_to_fail", "soon"),
    ],
)
def test_the_dtm_api_holds_numbers_to_the_native_api_bounds(
    guarded: Served, field: str, value: Any
) -> None:
    body = {"gid": f"num-{field}", "trans_type": "tcc", field: value}
    r = httpx.post(guarded.dtm + "/prepare", json=body, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["message"].startswith(f"field {field}: ")
    assert gids(guarded) == []
    for read in ("/all", f"/query?gid=num-{field}"):
        assert httpx.get(guarded.dtm + read, headers=AUTH).status_code == 200


def test_a_dtm_zero_means_not_set_as_dtm_clients_send_it(guarded: Served) -> None:
    body = {"gid": "zero-1", "trans_type": "tcc", "timeout_to_fail": 0, "retry_limit": 0}
    assert httpx.post(guarded.dtm + "/prepare", json=body, headers=AUTH).status_code == 200


# -- row 7: sizes --------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_fifty_megabyte_bodies_are_refused_without_being_read(
    guarded: Served, participant: Participant
) -> None:
    before = _rss_mb(guarded.process.pid)
    huge = {"blob": "x" * (50 * 1024 * 1024)}
    native = saga_body(participant, "big-1")
    native["steps"][0]["payload"] = huge
    dtm = dtm_saga(participant, "big-2", payloads=[json.dumps(huge)])
    results: list[int] = []

    def post(path: str, body: dict[str, Any]) -> None:
        try:
            r = httpx.post(guarded.url + path, json=body, headers=AUTH, timeout=60)
            results.append(r.status_code)
        except httpx.HTTPError:  # the server may close the socket while we still send
            results.append(413)

    threads = [
        threading.Thread(target=post, args=(path, body))
        for path, body in [("/v1/sagas", native), ("/api/dtmsvr/submit", dtm)] * 3
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == [413] * 6
    assert _rss_mb(guarded.process.pid) - before < 100
    assert gids(guarded) == []
    # a body with no length announced is cut off at the cap all the same
    chunks = (b"x" * 65536 for _ in range(40))
    r = httpx.post(
        guarded.url + "/v1/sagas",
        content=chunks,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert "--max-body-bytes" in r.json()["detail"]


def test_a_payload_past_its_cap_is_refused_by_either_api(
    guarded: Served, participant: Participant
) -> None:
    big = "y" * (300 * 1024)  # under the body cap, over the per-op payload cap
    native = saga_body(participant, "pay-1")
    native["steps"][1]["payload"] = {"note": big}
    r = httpx.post(guarded.url + "/v1/sagas", json=native, headers=AUTH)
    assert r.status_code == 422
    assert "steps.1.payload" in r.json()["detail"]
    dtm = dtm_saga(participant, "pay-2", payloads=[json.dumps({"note": big})])
    r = httpx.post(guarded.dtm + "/submit", json=dtm, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["message"].startswith("field payloads.0: ")
    assert gids(guarded) == []


def test_a_list_page_stops_at_its_byte_cap(log_url: str, participant: Participant) -> None:
    served = start_serve(log_url, env={"LEGATO_MAX_PAGE_BYTES": "256KiB"})
    try:
        payload = json.dumps({"note": "z" * (100 * 1024)})
        for i in range(6):
            body = dtm_saga(participant, f"page-{i}", payloads=[payload], wait_result=True)
            assert httpx.post(served.dtm + "/submit", json=body, timeout=30).status_code == 200
        page = httpx.get(served.dtm + "/all?limit=5")
        assert len(page.content) < 300 * 1024
        found = page.json()
        assert 1 <= len(found["transactions"]) < 5
        assert found["next_position"] == str(len(found["transactions"]))
        seen: list[str] = []
        position = ""
        while True:
            page = httpx.get(served.dtm + f"/all?limit=5&position={position}").json()
            seen += [t["gid"] for t in page["transactions"]]
            position = page["next_position"]
            if not position:
                break
        assert sorted(seen) == [f"page-{i}" for i in range(6)]
    finally:
        stop_serve(served)


# -- row 8: what a token may hold -----------------------------------------------------------


def test_non_ascii_tokens_are_wrong_tokens_never_errors(guarded: Served) -> None:
    url = guarded.url
    odd = {"Authorization": "Bearer tökén".encode()}
    r = httpx.post(url + "/v1/transactions/x/retry", headers=odd)  # type: ignore[arg-type]
    assert r.status_code == 401
    login = httpx.post(url + "/login", data={"token": "tökén", "next": "/"})
    assert login.status_code == 401
    with httpx.Client(base_url=url) as client:
        client.headers["Cookie"] = "legato_dashboard=t\xf6k\xe9n"
        page = client.get("/")
        assert page.status_code == 303  # to the login, not a 500
    for _ in range(20):  # they count as guesses
        httpx.post(url + "/v1/transactions/x/retry", headers=odd)  # type: ignore[arg-type]
    assert httpx.post(url + "/v1/transactions/x/retry", headers=AUTH).status_code == 429


def test_a_non_ascii_api_token_is_refused_when_the_service_starts(log_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "legato.cli", "serve", "--log", log_url, "--port", "1"],
        env={**os.environ, "LEGATO_API_TOKEN": "tökén"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "api_token" in done.stderr and "printable ASCII" in done.stderr


# -- row 9: the throttle and forwarded addresses ------------------------------------------


def test_the_throttle_ignores_x_forwarded_for_from_an_untrusted_address(guarded: Served) -> None:
    wrong = {"Authorization": "Bearer guess"}
    for _ in range(20):
        httpx.post(guarded.url + "/v1/transactions/x/retry", headers=wrong)
    spoofed = {**AUTH, "X-Forwarded-For": "10.0.0.77"}
    r = httpx.post(guarded.url + "/v1/transactions/x/retry", headers=spoofed)
    assert r.status_code == 429


def test_forwarded_addresses_are_believed_from_a_trusted_proxy(log_url: str) -> None:
    served = start_serve(
        log_url, env={"LEGATO_API_TOKEN": TOKEN, "LEGATO_TRUSTED_PROXIES": "127.0.0.1"}
    )
    try:
        wrong = {"Authorization": "Bearer guess", "X-Forwarded-For": "10.0.0.1"}
        for _ in range(20):
            httpx.post(served.url + "/v1/transactions/x/retry", headers=wrong)
        behind = {**AUTH, "X-Forwarded-For": "10.0.0.1"}
        assert (
            httpx.post(served.url + "/v1/transactions/x/retry", headers=behind).status_code == 429
        )
        other = {**AUTH, "X-Forwarded-For": "10.0.0.2"}
        assert httpx.post(served.url + "/v1/transactions/x/retry", headers=other).status_code == 404
    finally:
        stop_serve(served)


# -- row 10: an open API on a reachable address --------------------------------------------


def _serve_on_all_addresses(log_url: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "LEGATO_API_TOKEN"}
    command = ["serve", "--log", log_url, "--host", "0.0.0.0", "--port", str(port), *extra]
    process = subprocess.Popen(
        [sys.executable, "-m", "legato.cli", *command],
        env={**environment, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_up(url: str, process: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("legato serve did not come up")


def test_serving_on_a_reachable_address_without_a_token_needs_insecure(log_url: str) -> None:
    process, _ = _serve_on_all_addresses(log_url)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # it started after all: do not leave it serving
            process.kill()
            process.communicate()
    assert process.returncode != 0
    assert "refusing to serve on 0.0.0.0 without an API token" in err
    for extra, env in ((("--insecure",), None), ((), {"LEGATO_API_TOKEN": TOKEN})):
        process, url = _serve_on_all_addresses(log_url, *extra, env=env)
        try:
            _wait_up(url, process)
        finally:
            process.terminate()
            _, err = process.communicate(timeout=30)
        if extra:
            assert "WITHOUT an API token (--insecure)" in err


# -- row 11: what used to answer 500 --------------------------------------------------------


DTM_STEPS = b'{"trans_type": "saga", "steps": [{"action": "http://127.0.0.1:9/a"}]'


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/sagas", b'{"steps": [], "timeout_to_fail": NaN}'),
        ("/v1/sagas", b'{"steps": [], "timeout_to_fail": Infinity}'),
        ("/v1/sagas", b'{"steps": [], "timeout_to_fail": 1e400}'),
        ("/api/dtmsvr/submit", DTM_STEPS + b', "gid": "n", "timeout_to_fail": NaN}'),
        ("/api/dtmsvr/submit", b"[" * 100_000 + b"]" * 100_000),
        ("/api/dtmsvr/submit", DTM_STEPS + b', "gid": "g", "rollback_reason": "\\ud800"}'),
        ("/v1/sagas", b"\xff\xfe not utf-8"),
    ],
    ids=["NaN", "Infinity", "1e400", "DTM NaN", "nested 100k", "lone surrogate", "not UTF-8"],
)
def test_bodies_that_were_500s_are_400s(server: Served, path: str, raw: bytes) -> None:
    r = httpx.post(server.url + path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert httpx.get(server.url + "/v1/transactions").json()["transactions"] == []


def test_a_nul_in_a_gid_is_a_4xx_on_every_path(server: Served, participant: Participant) -> None:
    bad = "a\x00b"
    r = httpx.post(server.url + "/v1/sagas", json=saga_body(participant, bad))
    assert r.status_code == 422
    assert httpx.get(server.url + "/v1/transactions/a%00b").status_code == 422
    assert httpx.post(server.url + "/v1/transactions/a%00b/retry").status_code == 422
    assert httpx.get(server.dtm + "/query?gid=a%00b").status_code == 400
    for path in ("/prepare", "/submit", "/abort", "/forceStop"):
        r = httpx.post(server.dtm + path, json={"gid": bad, "trans_type": "tcc"})
        assert r.status_code == 400, (path, r.text)
    page = httpx.get(server.url + "/tx/a%00b")
    assert page.status_code == 404
    assert httpx.get(server.url + "/v1/transactions").json()["transactions"] == []


# -- row 12: slow clients ------------------------------------------------------------------


def test_slow_clients_are_cut_off_and_the_service_keeps_answering(log_url: str) -> None:
    served = start_serve(log_url, env={"LEGATO_HEADER_TIMEOUT": "1", "LEGATO_BODY_TIMEOUT": "1"})
    host, port = "127.0.0.1", int(served.url.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    try:
        for _ in range(500):  # headers a few bytes at a time, never finished
            s = socket.create_connection((host, port))
            s.sendall(b"POST /v1/sagas HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        for _ in range(200):  # headers done, the body never is
            s = socket.create_connection((host, port))
            s.sendall(
                b"POST /v1/sagas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"steps"'
            )
            socks.append(s)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            for s in socks[::50]:
                with contextlib.suppress(OSError):
                    s.send(b"X")
            assert httpx.get(served.url + "/health", timeout=2).status_code == 200
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        open_ones = list(socks)
        while open_ones and time.monotonic() < deadline:
            open_ones = [s for s in open_ones if not _closed_by_server(s)]
            time.sleep(0.1)
        assert open_ones == [], f"{len(open_ones)} slow connections were never closed"
    finally:
        for s in socks:
            s.close()
        stop_serve(served)


def _closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True
    # EOF, or the 408/400 the server sent before closing (its next read is then EOF)
    return data == b"" or data.startswith(b"HTTP/1.1")


# -- row 13: the dashboard session --------------------------------------------------------


def test_a_dashboard_session_ends_at_its_expiry(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url) as browser:
        r = browser.post("/login", data={"token": TOKEN, "next": "/"})
        assert r.status_code == 303
        assert browser.get("/").status_code == 200
        _expire_sessions(guarded.log)
        assert browser.get("/").status_code == 303  # to the login again


def _expire_sessions(log: str) -> None:
    """Age every session in the log past its expiry (as time would)."""
    sql = "UPDATE legato_session SET expires_at = 0"
    if log.startswith("sqlite:"):
        with sqlite3.connect(log.removeprefix("sqlite:///")) as conn:
            conn.execute(sql)
    else:
        with psycopg.connect(log, autocommit=True) as conn:
            conn.execute(sql)


# -- row 1, through the service: its answer cap is a setting ------------------------------


def test_the_service_reads_a_participant_answer_up_to_its_setting(
    log_url: str, participant: Participant
) -> None:
    served = start_serve(log_url, env={"LEGATO_MAX_ANSWER_BYTES": "1KiB"})
    try:
        body = saga_body(participant, "cap-1")
        participant.script("/cap-1/hotel", [(200, {"room": "x" * 4096})])
        r = httpx.post(served.url + "/v1/sagas", json=body, timeout=30)
        assert r.json()["status"] == "failed", r.text  # unknown twice: out of attempts
        tx = httpx.get(served.url + "/v1/transactions/cap-1").json()
        hotel = next(o for o in tx["ops"] if o["branch"] == "hotel" and o["op"] == "action")
        assert "over the cap of 1024" in hotel["error"] and "max_answer_bytes" in hotel["error"]
        assert hotel["output"] is None
    finally:
        stop_serve(served)
