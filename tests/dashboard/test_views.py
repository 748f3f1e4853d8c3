"""The dashboard's views, served by a real ``legato serve``: a flow's hops drawn as its
timeline, readable names (given over the native API or DTM's, or made from the steps),
compensations not needed, human times, and the header naming statuses as the filters."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx

import legato
from legato import TxStatus
from legato.flow import FlowRecorder
from tests.support.dashboard import Process, saga, submit, transaction
from tests.support.scripted_participant import Participant


async def _flow(log_url: str) -> None:
    log = legato.open_log(log_url)
    await log.open()
    try:
        r = FlowRecorder(log)
        await r.hop("order-9", "orders", "order.placed", name="order: 1 desk")
        await r.hop("order-9", "payments", "order.placed")
        await r.hop("order-9", "inventory", "payment.charged", detail={"retry_at": time.time() + 3})
        await r.hop("order-9", "payments", "inventory.failed", compensation=True)
        await r.hop(
            "order-9", "orders", "inventory.failed", compensation=True,
            end=TxStatus.FAILED, reason="desk sold out",
        )  # fmt: skip
        for _ in range(6):
            await r.hop("order-9", "notify", "payment.refunded")
    finally:
        await log.close()


def test_a_flow_s_page_draws_its_hops_and_their_compensation_path(
    serve: Process, log_url: str
) -> None:
    asyncio.run(_flow(log_url))
    html = httpx.get(serve.url + "/tx/order-9").text
    assert "No op has started." not in html
    lanes = re.findall(r'<g class="lane( backward)?" data-branch="([^"]+)" data-op="([^"]+)"', html)
    assert lanes == [
        ("", "orders", "order.placed"),
        ("", "payments", "order.placed"),
        ("", "inventory", "payment.charged"),
        (" backward", "payments", "inventory.failed"),
        (" backward", "orders", "inventory.failed"),
        (" backward", "notify", "payment.refunded"),  # six deliveries, one lane
    ]
    assert html.count('class="bar backward ok"') == 8
    assert "compensation path" in html
    assert html.count('<tr class="hop ') == 11
    assert html.count('<tr class="hop outcome-ok compensation">') == 8
    assert '<dd id="tx-name">order: 1 desk <span class="muted">(wire:flow)</span></dd>' in html
    assert re.search(r"retry_at=\d\d:\d\d:\d\d\.\d{3} UTC \(in [23](\.\d+)? s\)", html)
    assert not re.search(r"retry_at=\d{6}", html)  # no raw epoch, a time


def test_names_given_or_made_compensations_not_needed_and_the_header_s_labels(
    serve: Process, participant: Participant
) -> None:
    submit(serve.url, {**saga(participant, "named-1"), "name": "trip to Lisbon"})
    submit(serve.url, saga(participant, "unnamed-1"))
    listing = httpx.get(serve.url + "/").text
    assert '<td class="name" title="wire:saga">trip to Lisbon</td>' in listing
    assert '<td class="name" title="wire:saga">saga: flight, hotel, car</td>' in listing
    # the header names a status as the filters and the badges do
    labels = re.findall(r'<span class="label">([^<]+)</span>', listing)
    assert "submitted" in labels and "running" not in labels
    assert 'name="status" value="submitted"' in listing
    assert transaction(serve.url, "named-1")["title"] == "trip to Lisbon"
    assert transaction(serve.url, "unnamed-1")["title"] == "saga: flight, hotel, car"
    for bad in ("", "x" * 121, "bell\x07"):
        r = httpx.post(
            serve.url + "/v1/sagas", json={**saga(participant, "bad-1"), "name": bad}, timeout=30
        )
        assert r.status_code in (400, 422) and "name" in r.text, (bad, r.text)
    page = httpx.get(serve.url + "/tx/named-1").text
    # a succeeded saga's compensations will never run
    assert page.count('<span class="badge not-needed">not needed</span>') == 3
    assert '<span class="badge pending">' not in page


def test_a_dtm_saga_is_named_by_custom_data_or_after_its_first_steps_urls(
    serve: Process, participant: Participant
) -> None:
    def dtm(gid: str, custom: dict[str, object] | None) -> None:
        body: dict[str, object] = {
            "gid": gid,
            "trans_type": "saga",
            "steps": [
                {
                    "action": participant.url + "/api/TransOut",
                    "compensate": participant.url + "/api/TransOutRevert",
                },
                {
                    "action": participant.url + "/api/TransIn",
                    "compensate": participant.url + "/api/TransInRevert",
                },
            ],
            "payloads": ['{"amount": 30}', '{"amount": 30}'],
            "wait_result": True,
            "some_field_dtm_may_add": 1,  # unknown fields are ignored, as DTM does
        }
        if custom is not None:
            body["custom_data"] = json.dumps(custom)
        r = httpx.post(serve.url + "/api/dtmsvr/submit", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["dtm_result"] == "SUCCESS"

    dtm("dtm-named", {"name": "transfer 30"})
    dtm("dtm-plain", None)
    listing = httpx.get(serve.url + "/").text
    assert '<td class="name" title="wire:saga">transfer 30</td>' in listing
    assert '<td class="name" title="wire:saga">saga: TransOut, TransIn</td>' in listing
    bad = httpx.post(
        serve.url + "/api/dtmsvr/submit",
        json={"gid": "dtm-bad", "trans_type": "saga", "custom_data": json.dumps({"name": 7}),
              "steps": [{"action": participant.url + "/a"}], "payloads": ["{}"]},
        timeout=30,
    )  # fmt: skip
    assert bad.status_code == 400 and "custom_data.name" in bad.text
