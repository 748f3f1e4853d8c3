"""The dashboard over HTTP, served by a real ``legato serve``: the list's filters and
bounds, the transaction page, the buttons' guard, and escaping."""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import quote

import httpx

from tests.support.dashboard import SOLD_OUT, TOKEN, Process, saga, submit, transaction, wait_stuck
from tests.support.records import make_overdue
from tests.support.scripted_participant import Participant
from tests.support.workflows import left_behind, waited


def gids(html: str) -> list[str]:
    """The gids the list links to, in order (the stuck section's first, if shown)."""
    return re.findall(r'<td class="gid"><a href="/tx/([^"]+)">', html)


def listed(url: str, query: str = "") -> httpx.Response:
    return httpx.get(f"{url}/{query}", timeout=10)


def test_the_list_filters_by_status_mode_time_and_gid(
    serve: Process, participant: Participant
) -> None:
    submit(serve.url, saga(participant, "trip-ok-1"))
    submit(serve.url, saga(participant, "trip-ok-2"))
    submit(serve.url, saga(participant, "trip-bad-3", car=[SOLD_OUT]))

    page = listed(serve.url)
    assert page.status_code == 200
    assert gids(page.text) == ["trip-bad-3", "trip-ok-2", "trip-ok-1"]  # newest first
    assert gids(listed(serve.url, "?status=failed").text) == ["trip-bad-3"]
    both = "?status=failed&status=succeeded"
    assert gids(listed(serve.url, both).text) == ["trip-bad-3", "trip-ok-2", "trip-ok-1"]
    assert gids(listed(serve.url, "?q=ok-").text) == ["trip-ok-2", "trip-ok-1"]
    assert gids(listed(serve.url, "?q=ok-&status=failed").text) == []
    assert "No transaction matches" in listed(serve.url, "?mode=tcc").text
    assert gids(listed(serve.url, "?mode=saga&since=1h").text) == [
        "trip-bad-3",
        "trip-ok-2",
        "trip-ok-1",
    ]
    assert gids(listed(serve.url, "?until=2001-01-01T00:00").text) == []
    assert gids(listed(serve.url, "?since=2999-01-01T00:00:00%2B00:00").text) == []


def test_the_list_is_paged_with_next_and_previous_links(
    serve: Process, participant: Participant
) -> None:
    for i in range(3):
        submit(serve.url, saga(participant, f"page-{i}"))
    first = listed(serve.url, "?limit=2")
    assert gids(first.text) == ["page-2", "page-1"]
    assert 'rel="prev"' not in first.text
    older = re.search(r'rel="next" href="/([^"]+)"', first.text)
    assert older is not None
    second = listed(serve.url, older.group(1).replace("&amp;", "&"))
    assert gids(second.text) == ["page-0"]
    assert 'rel="next"' not in second.text
    assert 'rel="prev"' in second.text


def test_bad_filters_are_refused_with_a_400_naming_the_field(serve: Process) -> None:
    for query, field in [
        ("?status=bogus", "status"),
        ("?mode=nope", "mode"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=lots", "limit"),
        ("?offset=-1", "offset"),
        ("?since=yesterday", "since"),
        ("?until=2026-13-45", "until"),
        ("?q=" + "x" * 200, "q"),
    ]:
        r = listed(serve.url, query)
        assert r.status_code == 400, (query, r.status_code)
        assert f"{field}:" in r.text, query
    assert listed(serve.url, "?limit=200").status_code == 200


def test_an_unknown_gid_is_a_404_page(serve: Process) -> None:
    r = httpx.get(serve.url + "/tx/no-such-gid")
    assert r.status_code == 404
    assert "No transaction has gid" in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert httpx.post(serve.url + "/tx/no-such-gid/retry").status_code == 404


def test_payloads_errors_and_gids_are_shown_as_text_never_as_markup(
    serve: Process, participant: Participant
) -> None:
    gid = "esc-trip"
    body = saga(
        participant,
        gid,
        payload={"note": "<script>alert(1)</script>"},
        car=[(409, {"dtm_result": "FAILURE", "message": "<img src=x onerror=alert(2)>"})],
    )
    assert submit(serve.url, body)["status"] == "failed"

    page = httpx.get(f"{serve.url}/tx/{gid}")
    assert page.status_code == 200
    html = page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script>alert" not in html
    assert "<img" not in html
    # the only script is the dashboard's own, and the policy forbids any other
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/dashboard.js" defer>']
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # no gid holds markup (legato._bounds), but a page asked for one still escapes it
    missing = httpx.get(f"{serve.url}/tx/{quote('esc/<b>trip</b>', safe='')}")
    assert missing.status_code == 404
    assert "esc/&lt;b&gt;trip&lt;/b&gt;" in missing.text
    assert "<b>trip" not in missing.text


def test_the_transaction_page_shows_ops_timeline_and_events(
    serve: Process, participant: Participant
) -> None:
    submit(serve.url, saga(participant, "shown-1", car=[SOLD_OUT]))
    html = httpx.get(serve.url + "/tx/shown-1").text
    assert "car failed: HTTP 409: sold out" in html  # the reason
    assert html.count('class="bar backward ok"') == 3  # car, hotel, flight compensated
    assert html.count('class="bar failed"') == 1
    assert "compensation path" in html
    assert html.count('<tr class="op ') == 6
    assert "op.failed" in html
    assert f"POST {participant.url}/shown-1/car" in html  # the target
    assert "Ended: nothing left to do." in html  # no buttons on an ended transaction


def test_summary_json_counts_what_the_log_holds(serve: Process, participant: Participant) -> None:
    submit(serve.url, saga(participant, "count-1"))
    submit(serve.url, saga(participant, "count-2", car=[SOLD_OUT]))
    s = httpx.get(serve.url + "/summary.json").json()
    assert s["counts"] == {}  # by status: the unended only
    assert s["stuck"] == 0
    assert s["started"] == 2
    assert s["ended"] == {"succeeded": 1, "failed": 1}  # in the last minute
    assert s["text"]["submitted"] == "0" and "succeeded" not in s["text"]
    assert s["text"]["ended"] == "2 (1 ok, 1 failed)"


def test_without_a_token_set_the_buttons_work_and_are_recorded_by_the_dashboard(
    serve: Process, participant: Participant
) -> None:
    body = saga(participant, "nt-1", car=[SOLD_OUT], hotel_cancel=[(500, "down")], wait=False)
    submit(serve.url, body)
    wait_stuck(serve.url, "nt-1")
    participant.script("/nt-1/hotel/cancel", [(200, {})])
    r = httpx.post(serve.url + "/tx/nt-1/retry")
    assert r.status_code == 303
    assert r.headers["location"] == "/tx/nt-1?done=retry"
    deadline = time.monotonic() + 20
    while transaction(serve.url, "nt-1")["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    events = transaction(serve.url, "nt-1")["events"]
    asked = [e["detail"] for e in events if e["kind"] == "requested"]
    assert asked == [{"what": "retry", "by": "dashboard"}]
    page = httpx.get(serve.url + "/tx/nt-1?done=retry").text
    assert "Retry requested." in page
    assert "retry requested by dashboard" in page


def test_a_form_posted_from_another_site_is_refused(
    serve: Process, participant: Participant
) -> None:
    submit(serve.url, saga(participant, "xs-1", car=[SOLD_OUT], hotel_cancel=[(500, "down")]))
    wait_stuck(serve.url, "xs-1")
    before = transaction(serve.url, "xs-1")["events"]
    r = httpx.post(serve.url + "/tx/xs-1/abort", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert transaction(serve.url, "xs-1")["events"] == before


def test_with_a_token_set_the_buttons_answer_401_without_it_and_change_nothing(
    guarded: Process, participant: Participant
) -> None:
    body = saga(participant, "tk-1", car=[SOLD_OUT], hotel_cancel=[(500, "down")])
    submit(guarded.url, body, token=TOKEN)
    before = wait_stuck(guarded.url, "tk-1")
    wrong_bearer = {"Authorization": "Bearer nope"}
    for path, form in [("retry", None), ("abort", None), ("force-end", {"status": "failed"})]:
        url = f"{guarded.url}/tx/tk-1/{path}"
        assert httpx.post(url, data=form).status_code == 401
        assert httpx.post(url, data=form, headers=wrong_bearer).status_code == 401
        with httpx.Client(cookies={"legato_dashboard": "0" * 64}) as forged:
            assert forged.post(url, data=form).status_code == 401
    wrong = httpx.post(guarded.url + "/login", data={"token": "nope", "next": "/"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    after = transaction(guarded.url, "tk-1")
    assert after["events"] == before["events"]
    assert after["requested"] is None
    assert after["stuck"] == before["stuck"]
    assert after["status"] == "aborting"
    # the page itself shows payloads and errors: it sends a stranger to log in
    page = httpx.get(guarded.url + "/tx/tk-1")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Ftx%2Ftk-1"
    listing = httpx.get(guarded.url + "/?status=failed")
    assert listing.status_code == 303
    assert httpx.get(guarded.url + "/summary.json").status_code == 401


def test_logging_in_sets_a_strict_httponly_cookie_that_opens_the_buttons(
    guarded: Process, participant: Participant
) -> None:
    body = saga(participant, "tk-2", car=[SOLD_OUT], hotel_cancel=[(500, "down")])
    submit(guarded.url, body, token=TOKEN)
    wait_stuck(guarded.url, "tk-2")
    with httpx.Client(base_url=guarded.url) as browser:
        r = browser.post("/login", data={"token": TOKEN, "next": "/tx/tk-2"})
        assert r.status_code == 303
        assert r.headers["location"] == "/tx/tk-2"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        assert 'id="retry"' in browser.get("/tx/tk-2").text
        session = browser.cookies["legato_dashboard"]
        r = browser.post("/tx/tk-2/force-end", data={"status": "sideways"})
        assert r.status_code == 400
        r = browser.post("/tx/tk-2/force-end", data={"status": "failed"})
        assert r.status_code == 303
        # logging out ends the session for good: the same cookie replayed is refused
        assert browser.post("/logout").status_code == 303
    with httpx.Client(base_url=guarded.url, cookies={"legato_dashboard": session}) as replay:
        assert replay.get("/tx/tk-2").status_code == 303  # to the login
        assert replay.post("/tx/tk-2/retry").status_code == 401
    # the API's own header works too
    r = httpx.post(guarded.url + "/tx/tk-2/retry", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code in (303, 409)  # 409 once the forced end has landed
    events = transaction(guarded.url, "tk-2")["events"]
    asked = [e["detail"] for e in events if e["kind"] == "requested"]
    assert asked[0] == {"what": "failed", "by": "dashboard"}


def test_login_never_redirects_off_the_site(guarded: Process) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        r = httpx.post(guarded.url + "/login", data={"token": TOKEN, "next": target})
        assert r.status_code == 303
        assert r.headers["location"] == "/"


def test_a_workflow_s_page_lists_its_journal_and_draws_its_waits_signals_and_rollback(
    serve: Process, log_url: str
) -> None:
    asyncio.run(waited(log_url))  # a coordinator of its own: serve's has no workflows
    html = httpx.get(serve.url + "/tx/wf-undone").text
    assert "<h2>Journal</h2>" in html
    entries = re.findall(r'<td class="position">(\d*)</td><td class="entry">([^<]*)</td>', html)
    assert entries == [
        ("0001", "step reserve"),
        ("0001", "compensate reserve"),
        ("0002", "wait for &#34;approval&#34;"),
        ("0003", "sleep"),
        ("0004", "step reserve"),
        ("0004", "compensate reserve"),
        ("", "signal &#34;approval&#34;"),
        ("", "signal &#34;approval&#34;"),
    ]
    assert ">signalled</span>" in html and "approval#boss = true" in html
    # the second signal was kept, and never taken: said so, and marked out
    assert html.count('class="op op-signal kind-signal status-succeeded not-taken"') == 1
    assert "approval#late = false; never taken" in html
    # the timeline: the wait with how it ended, being let go, the signals, the undoing
    assert html.count('class="bar wait signalled"') == 1
    assert '"wait-label"' in html and "&#34;approval&#34;: signal</text>" in html
    assert 'class="bar wait asleep"' in html  # the short sleep after it
    assert "let go (no task held)</text>" in html and html.count('<rect class="let-go"') == 1
    assert html.count('<g class="mark signal">') == 2
    assert html.count('class="bar backward ok"') == 1  # the flight; the hotel never happened
    assert "compensation path" in html
    ok = httpx.get(serve.url + "/tx/wf-ok").text
    assert "return value" in ok and "= &#34;inn booked&#34;" in ok


def test_what_no_running_coordinator_claims_is_shown_waiting_for_code(
    serve: Process, log_url: str
) -> None:
    asyncio.run(left_behind(log_url, ["left-1", "left-2"]))
    make_overdue(log_url, "left-1", 600)
    make_overdue(log_url, "left-2", 5)  # within the grace: a coordinator may yet claim it
    listing = listed(serve.url).text
    assert listing.count('class="tx status-submitted is-unclaimed"') == 1
    note = "waiting for code: no coordinator has left@1 (due 10 min ago, claimed by none)"
    assert f'<span class="unclaimed">{note}</span>' in listing
    assert '<span class="n" data-summary="unclaimed">1</span>' in listing
    page = httpx.get(serve.url + "/tx/left-1").text
    assert f'<dd class="unclaimed" id="tx-unclaimed">{note}</dd>' in page
    assert 'id="tx-unclaimed"' not in httpx.get(serve.url + "/tx/left-2").text
    s = httpx.get(serve.url + "/summary.json").json()
    assert s["text"]["unclaimed"] == "1"
    assert [(u["mode"], u["name"], u["count"]) for u in s["unclaimed"]] == [
        ("workflow", "left@1", 1)
    ]
