"""Signals to a workflow over the native API: ``POST /v1/transactions/{gid}/signals/{name}``
of a real ``legato serve`` process.

``legato serve`` runs no Python workflow of its own (it has nowhere to import one
from), so the workflow runs in a coordinator of the test's, on the same log: the
served process keeps the signal in the log, and the test's coordinator, which waits
for it, takes it from there, as any coordinator sharing the log would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import legato
from legato import Coordinator, Saga
from tests.support.approval import approval_workflow, shipments
from tests.support.processes import Served, start_serve, stop_serve

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def served(log_url: str) -> Iterator[Served]:
    """``legato serve`` on the test's log, its API token set."""
    process = start_serve(log_url, env={"LEGATO_API_TOKEN": "s3cret"})
    try:
        yield process
    finally:
        stop_serve(process)


@pytest.fixture
async def runner(served: Served, log_url: str) -> AsyncIterator[Coordinator]:
    """The coordinator that runs the workflows, on the served process's log."""
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1) as c:
        yield c


@pytest.fixture
async def api(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        yield client


async def signal_ops(c: Coordinator, gid: str) -> list[tuple[str, Any]]:
    _, ops = await c.get(gid)
    return [(o.target, o.output) for o in ops if o.op is legato.OpName.SIGNAL]


async def test_a_workflow_waiting_for_a_signal_sent_over_http_takes_it_and_succeeds(
    runner: Coordinator, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    workflow = approval_workflow(tmp_path / "shipping.db")
    handle = await runner.start_workflow(workflow, "order-7", gid="wf-1")

    r = await api.post(
        "/v1/transactions/wf-1/signals/approval", json={"value": {"by": "ops"}}, headers=TOKEN
    )

    assert r.status_code == 200, r.text
    assert r.json() == {"gid": "wf-1", "signal": "approval", "kept": True}
    ship = await api.post("/v1/transactions/wf-1/signals/ship", headers=TOKEN)  # no body
    assert ship.json() == {"gid": "wf-1", "signal": "ship", "kept": True}
    outcome = await handle.result(timeout=30)
    assert outcome.status is legato.TxStatus.SUCCEEDED, outcome.reason
    assert outcome.result == {"approval": {"by": "ops"}, "again": None}
    assert shipments(tmp_path / "shipping.db") == [("order-7", "ops")]
    signalled = [e for e in await runner.events("wf-1") if e.kind == "signal"]
    assert [(e.detail["signal"], e.detail["by"]) for e in signalled] == [
        ("approval", "api"),
        ("ship", "api"),
    ]
    # once it has ended, it takes no more
    late = await api.post("/v1/transactions/wf-1/signals/approval", headers=TOKEN)
    assert late.status_code == 409
    assert "already ended" in late.json()["detail"]


async def test_the_same_signal_id_twice_is_kept_once_and_taken_once(
    runner: Coordinator, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    workflow = approval_workflow(tmp_path / "shipping.db")
    handle = await runner.start_workflow(workflow, "order-8", gid="wf-2")
    body = {"value": {"by": "ops"}, "id": "ticket-42"}
    url = "/v1/transactions/wf-2/signals/approval"

    first = await api.post(url, json=body, headers=TOKEN)
    again = await api.post(url, json=body, headers=TOKEN)

    assert (first.status_code, first.json()["kept"]) == (200, True)
    assert (again.status_code, again.json()) == (
        200,
        {"gid": "wf-2", "signal": "approval", "kept": False},
    )
    await api.post("/v1/transactions/wf-2/signals/ship", headers=TOKEN)
    outcome = await handle.result(timeout=30)
    assert outcome.status is legato.TxStatus.SUCCEEDED, outcome.reason
    assert outcome.result == {"approval": {"by": "ops"}, "again": None}
    assert shipments(tmp_path / "shipping.db") == [("order-8", "ops")]
    assert await signal_ops(runner, "wf-2") == [("approval", {"by": "ops"}), ("ship", True)]


async def test_signalling_needs_the_api_token_and_nothing_is_kept_without_it(
    runner: Coordinator, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    workflow = approval_workflow(tmp_path / "shipping.db")
    handle = await runner.start_workflow(workflow, "order-9", gid="wf-3")
    url = "/v1/transactions/wf-3/signals/approval"

    missing = await api.post(url, json={"value": {"by": "intruder"}})
    wrong = await api.post(
        url, json={"value": {"by": "intruder"}}, headers={"Authorization": "Bearer nope"}
    )

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert "Authorization: Bearer" in missing.json()["detail"]
    assert await signal_ops(runner, "wf-3") == []
    assert (await handle.status()).status is legato.TxStatus.SUBMITTED
    assert shipments(tmp_path / "shipping.db") == []


async def test_a_signal_the_api_cannot_keep_is_refused_with_its_reason_and_documented(
    runner: Coordinator, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    saga = Saga("trip")
    saga.step("hotel", action=lambda ctx: "room 7")
    await (await runner.submit(saga, None, gid="saga-1")).result(timeout=30)
    await runner.start_workflow(approval_workflow(tmp_path / "shipping.db"), "o", gid="wf-4")

    async def signal(gid: str, name: str = "approval", **body: Any) -> httpx.Response:
        return await api.post(f"/v1/transactions/{gid}/signals/{name}", json=body, headers=TOKEN)

    unknown = await signal("nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    saga_gid = await signal("saga-1")
    assert saga_gid.status_code == 409
    assert saga_gid.json()["detail"] == "saga-1 is a saga, not a workflow: it takes no signals"
    bad_name = await signal("wf-4", "a b")
    assert bad_name.status_code == 422
    assert [d["loc"] for d in bad_name.json()["detail"]] == [["path", "name"]]
    bad_id = await signal("wf-4", id="ticket/1")
    assert bad_id.status_code == 422
    assert [d["loc"] for d in bad_id.json()["detail"]] == [["body", "id"]]
    too_large = await signal("wf-4", value="x" * (300 * 1024))
    assert too_large.status_code == 422
    assert too_large.json()["detail"].startswith("value: ")
    extra = await signal("wf-4", colour="red")
    assert extra.status_code == 422
    assert await signal_ops(runner, "wf-4") == []
    paths = (await api.get("/openapi.json")).json()["paths"]
    route = paths["/v1/transactions/{gid}/signals/{name}"]["post"]
    assert route["summary"] == "Send a signal to a workflow"
    assert {p["name"] for p in route["parameters"]} == {"gid", "name"}
