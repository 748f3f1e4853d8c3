"""The dashboard in a real headless browser: Debian's Chromium, driven by Playwright.

Playwright never downloads a browser here: it starts ``/usr/bin/chromium``
(``scripts/setup`` installs it). Without it these tests skip, except under
``CI=true``, where they fail. Each test leaves a screenshot of the transaction
page in ``test-output/dashboard/`` at the repository's root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dashboard import SOLD_OUT, TOKEN, Process, saga, submit, transaction, wait_stuck
from tests.support.records import make_overdue
from tests.support.scripted_participant import Participant
from tests.support.services import IN_CI
from tests.support.workflows import left_behind, waited

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "dashboard"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium, for one test: Playwright's sync API marks the thread's event loop as
    running while it is up, so it must start after the fixtures that run one
    (the PostgreSQL template's migration): tests name it after their server."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is absent: scripts/setup installs Debian's chromium"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: the browser tests must run)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    # a loaded CI machine can take seconds to render a page: wait longer than the 5 s default
    expect.set_options(timeout=15_000)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, tmp_path / path.name)
    return path


def reload_until(page: Any, selector: str, text: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while page.locator(selector).inner_text().strip() != text:
        assert time.monotonic() < deadline, f"{selector} never read {text!r}"
        time.sleep(0.2)
        page.reload()


def test_the_list_opens_a_failed_saga_whose_timeline_shows_the_compensations(
    serve: Process, participant: Participant, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    submit(serve.url, saga(participant, "trip-ok"))
    submit(serve.url, saga(participant, "trip-sold-out", car=[SOLD_OUT]))

    page.goto(serve.url + "/")
    expect(page.locator("table.transactions tbody tr")).to_have_count(2)
    expect(page.locator('[data-summary="ended"]')).to_have_text("2 (1 ok, 1 failed)")
    # the header's counts refresh by themselves
    submit(serve.url, saga(participant, "trip-ok-2"))
    expect(page.locator('[data-summary="ended"]')).to_have_text("3 (2 ok, 1 failed)")

    page.get_by_role("link", name="trip-sold-out").click()
    expect(page).to_have_title("trip-sold-out · Legato")
    expect(page.locator("#tx-status")).to_have_text("failed")
    expect(page.locator("#tx-reason")).to_have_text("car failed: HTTP 409: sold out")
    timeline = page.locator("figure.timeline svg")
    failed = timeline.locator("rect.bar.failed")
    expect(failed).to_have_count(1)
    assert failed.get_attribute("data-op") == "action"
    compensations = timeline.locator("rect.bar.backward")
    expect(compensations).to_have_count(3)
    assert {compensations.nth(i).get_attribute("data-outcome") for i in range(3)} == {"ok"}
    lanes = timeline.locator("g.lane.backward")
    assert [lanes.nth(i).get_attribute("data-branch") for i in range(3)] == [
        "car",
        "hotel",
        "flight",
    ]  # in the order they ran
    expect(timeline.locator("text.band-label")).to_contain_text("compensation path")
    # the failure and the compensations are drawn in colours of their own
    fill = "el => getComputedStyle(el).fill"
    colours = {failed.evaluate(fill), compensations.first.evaluate(fill)}
    forward_ok = timeline.locator("rect.bar.ok:not(.backward)").first.evaluate(fill)
    assert len(colours | {forward_ok}) == 3
    # the compensations ran after the failure, left to right
    xs = [float(compensations.nth(i).get_attribute("x") or 0) for i in range(3)]
    assert min(xs) >= float(failed.get_attribute("x") or 0)
    screenshot(page, "failed-saga", tmp_path)


def test_an_operator_logs_in_and_retries_a_stuck_saga_from_the_page(
    guarded: Process, participant: Participant, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    body = saga(participant, "stuck-1", car=[SOLD_OUT], hotel_cancel=[(500, "hotel db down")])
    submit(guarded.url, body, token=TOKEN)
    wait_stuck(guarded.url, "stuck-1")

    # the pages show payloads and errors: a stranger is sent to log in, then back
    page.goto(guarded.url + "/")
    expect(page).to_have_url(guarded.url + "/login?next=%2F")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(guarded.url + "/")
    stuck = page.locator("#stuck table tbody tr")
    expect(stuck).to_have_count(1)
    expect(page.locator('[data-summary="stuck"]')).to_have_text("1")
    stuck.get_by_role("link", name="stuck-1").click()
    expect(page.locator("#tx-stuck")).to_contain_text("hotel db down")

    participant.script("/stuck-1/hotel/cancel", [(200, {})])  # the hotel service is fixed
    page.locator("#retry").click()
    expect(page.locator(".flash")).to_contain_text("Retry requested.")
    reload_until(page, "#tx-status", "failed")
    expect(page.locator("#tx-stuck")).to_have_count(0)
    expect(page.locator("table.events")).to_contain_text("retry requested by dashboard")
    expect(page.locator("figure.timeline rect.bar.backward.ok")).to_have_count(3)
    screenshot(page, "stuck-saga-retried", tmp_path)

    tx = transaction(guarded.url, "stuck-1")
    assert [o["status"] for o in tx["ops"] if o["op"] == "compensate"] == ["succeeded"] * 3
    assert [c.params["op"] for c in participant.calls_to("/stuck-1/hotel/cancel")] == [
        "compensate"
    ] * 3  # two failed attempts, then the retry


def test_cancelling_a_saga_in_flight_asks_first_and_rolls_it_back(
    serve: Process, participant: Participant, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    body = saga(participant, "slow-1", wait=False)
    participant.script("/slow-1/hotel", [(425, {"dtm_result": "ONGOING"})])  # never done
    submit(serve.url, body)

    page.goto(serve.url + "/tx/slow-1")
    expect(page.locator("#tx-status")).to_have_text("submitted")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.locator("#abort").click()
    assert asked == ["Roll this transaction back?"]
    assert transaction(serve.url, "slow-1")["requested"] is None  # dismissed: nothing sent
    page.once("dialog", lambda d: d.accept())
    page.locator("#abort").click()
    expect(page.locator(".flash")).to_contain_text("Cancel (abort) requested.")
    reload_until(page, "#tx-status", "failed")
    screenshot(page, "cancelled-saga", tmp_path)
    assert [op for b, op, _ in participant.ops() if b == "flight"] == ["action", "compensate"]


@pytest.fixture
def workflows(serve: Process, log_url: str) -> None:
    """Workflows in the served log, before the browser starts (it marks the thread's
    loop running): two that waited for an approval, one of a version no coordinator
    has, due ten minutes ago."""
    asyncio.run(waited(log_url))
    asyncio.run(left_behind(log_url, ["left-1"]))
    make_overdue(log_url, "left-1", 600)


def test_a_workflow_reads_on_its_page_and_one_no_coordinator_has_is_seen_waiting_for_code(
    serve: Process, workflows: None, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(serve.url + "/")
    expect(page.locator('[data-summary="unclaimed"]')).to_have_text("1")
    unclaimed = page.locator("tr.is-unclaimed")
    expect(unclaimed).to_have_count(1)
    expect(unclaimed).to_contain_text("waiting for code: no coordinator has left@1")

    page.get_by_role("link", name="wf-undone").click()
    expect(page.locator("#tx-status")).to_have_text("failed")
    timeline = page.locator("figure.timeline svg")
    wait = timeline.locator("rect.bar.wait.signalled")
    expect(wait).to_have_count(1)
    expect(timeline.locator("text.wait-label").first).to_have_text('"approval": signal')
    expect(timeline.locator("rect.let-go")).to_have_count(1)
    expect(timeline.locator("g.mark.signal")).to_have_count(2)
    expect(timeline.locator("rect.bar.backward.ok")).to_have_count(1)
    # a wait looks like none of the attempts, and a lane's name stays clear of its status
    fill = "el => getComputedStyle(el).fill"
    ok = timeline.locator("rect.bar.ok:not(.backward)").first.evaluate(fill)
    assert wait.evaluate(fill) != ok
    lanes = timeline.locator("g.lane")
    for i in range(lanes.count()):
        name = lanes.nth(i).locator("text.lane-label").bounding_box()
        status = lanes.nth(i).locator("text.lane-status")
        if status.count():
            box = status.bounding_box()
            assert name is not None and box is not None
            assert name["x"] + name["width"] <= box["x"] + 1, lanes.nth(i).inner_html()
    # the journal says what each entry is, and which signal was never taken
    late = page.locator("table.journal tr.not-taken")
    expect(late).to_have_count(1)
    expect(late).to_contain_text("approval#late = false; never taken")
    expect(page.locator("table.journal")).to_contain_text('wait for "approval"')
    screenshot(page, "workflow-waited-and-undone", tmp_path)


def test_the_api_page_draws_the_api_with_every_outside_address_blocked(
    serve: Process, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    elsewhere: list[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(serve.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.goto(serve.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Legato coordinator")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    screenshot(page, "api-docs", tmp_path)
    assert elsewhere == []


@pytest.fixture
def shop_order(log_url: str) -> None:
    """A choreographed order, recorded hop by hop, that ended failed and was refunded
    (before the browser starts: see ``browser``)."""
    from legato import TxStatus, open_log
    from legato.flow import FlowRecorder

    async def record() -> None:
        log = open_log(log_url)
        await log.open()
        try:
            r = FlowRecorder(log)
            await r.hop("shop-1", "orders", "order.placed", name="order: 3 desks")
            for service, event, back in (
                ("payments", "order.placed", False),
                ("inventory", "payment.charged", False),
                ("payments", "inventory.failed", True),
            ):
                await asyncio.sleep(0.02)
                await r.hop("shop-1", service, event, compensation=back)
            await r.hop(
                "shop-1", "orders", "inventory.failed", compensation=True,
                end=TxStatus.FAILED, reason="desk sold out",
            )  # fmt: skip
            await r.hop("shop-1", "notify", "payment.refunded")
        finally:
            await log.close()

    asyncio.run(record())


def test_a_choreographed_order_s_hops_are_its_timeline_with_the_way_back(
    serve: Process, shop_order: None, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(serve.url + "/")
    row = page.locator("table.transactions tbody tr", has_text="shop-1")
    expect(row.locator("td.name")).to_have_text("order: 3 desks")
    row.get_by_role("link", name="shop-1").click()
    expect(page.locator("#tx-status")).to_have_text("failed")
    expect(page.get_by_text("No op has started.")).to_have_count(0)
    timeline = page.locator("figure.timeline svg")
    expect(timeline.locator("g.lane")).to_have_count(6)
    back = timeline.locator("g.lane.backward")
    expect(back).to_have_count(3)
    assert [back.nth(i).get_attribute("data-branch") for i in range(3)] == [
        "payments",
        "orders",
        "notify",
    ]
    expect(timeline.locator("text.band-label")).to_contain_text("compensation path")
    expect(page.locator("table.hops tbody tr")).to_have_count(6)
    expect(page.locator("table.hops tr.compensation")).to_have_count(3)
    screenshot(page, "choreographed-order", tmp_path)
