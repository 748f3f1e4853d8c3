"""A workflow's steps over real participants: HTTP services behind the barrier (the null
compensation and the hanging action refused, as for a saga), and messages published
to real brokers."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import legato
from legato import Coordinator, HttpCall, RetryPolicy, TxStatus
from legato.brokers import broker_from_url
from legato.participant import create_table
from legato.participant.starlette import run_in_barrier
from legato.transports.broker import BrokerCall
from tests.support.scripted_participant import serve
from tests.support.services import need_service, port_problem


def hotel_service(path: Path, delays: dict[str, float]) -> Starlette:
    """A hotel whose reservations and cancellations run in the barrier on SQLite; a
    reservation for a room in ``delays`` arrives that many seconds late."""

    def conn() -> sqlite3.Connection:
        return sqlite3.connect(path, check_same_thread=False)

    async def reserve(request: Request) -> Response:
        body = await request.json()
        await asyncio.sleep(delays.get(body["room"], 0))
        gid = request.query_params["gid"]

        def work(c: sqlite3.Connection) -> None:
            if body["room"].startswith("full"):
                raise legato.Failure("sold out")
            c.execute("INSERT INTO rooms (gid, room) VALUES (?, ?)", (gid, body["room"]))

        with closing(conn()) as c:
            return await run_in_barrier(request, c, work)

    async def cancel(request: Request) -> Response:
        gid = request.query_params["gid"]
        body = await request.json()

        def work(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM rooms WHERE gid = ? AND room = ?", (gid, body["room"]))

        with closing(conn()) as c:
            return await run_in_barrier(request, c, work)

    with closing(conn()) as c:
        create_table(c)
        c.execute("CREATE TABLE rooms (gid text, room text)")
        c.commit()
    return Starlette(
        routes=[
            Route("/reserve", reserve, methods=["POST"]),
            Route("/cancel", cancel, methods=["POST"]),
        ]
    )


@pytest.fixture
def hotel(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, float]]]:
    delays: dict[str, float] = {}
    path = tmp_path / "hotel.db"
    with serve(hotel_service(path, delays)) as url:
        yield url, path, delays


def rooms(path: Path, gid: str) -> list[str]:
    with closing(sqlite3.connect(path)) as c:
        return [r for (r,) in c.execute("SELECT room FROM rooms WHERE gid = ?", (gid,))]


@legato.workflow("http_trip")
async def http_trip(wf: legato.Workflow, url: str, rooms: list[str], fail: bool) -> str:
    got = None
    for room in rooms:
        try:
            await wf.step(
                HttpCall(f"{url}/reserve", body={"room": room}),
                compensate=HttpCall(f"{url}/cancel", body={"room": room}),
                name=f"reserve-{room}",
                retry=RetryPolicy(max_attempts=1, timeout=0.3),
            )
            got = room
            break
        except legato.Failure:
            continue
    if fail or got is None:
        raise legato.Failure("no trip")
    return got


async def test_http_steps_run_in_the_participants_barrier_and_are_undone_by_it(
    coordinator: Coordinator, hotel: tuple[str, Path, dict[str, float]]
) -> None:
    url, path, _ = hotel
    ok = await (await coordinator.start_workflow(http_trip, url, ["full", "a"], False)).result(
        timeout=15
    )
    assert ok.succeeded and ok.result == "a" and rooms(path, ok.gid) == ["a"]
    undone = await (await coordinator.start_workflow(http_trip, url, ["b"], True)).result(
        timeout=15
    )
    assert undone.status is TxStatus.FAILED and rooms(path, undone.gid) == []


async def test_a_late_action_after_its_compensation_is_refused_as_hanging(
    coordinator: Coordinator, hotel: tuple[str, Path, dict[str, float]]
) -> None:
    url, path, delays = hotel
    delays["slow"] = 1.0  # the coordinator gives up on it after 0.3 s
    h = await coordinator.start_workflow(http_trip, url, ["slow"], False)
    o = await h.result(timeout=15)
    # given up on: rolled back, its compensation ran first (a null compensation)...
    assert o.status is TxStatus.FAILED and "gave up" in (o.reason or "")
    await asyncio.sleep(1.5)  # ... and the reservation that arrives after it is refused
    assert rooms(path, h.gid) == []


BROKERS = {
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672/", 5672),
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "nats": ("nats://127.0.0.1:4222", 4222),
}


@legato.workflow("announce")
async def announce(wf: legato.Workflow, topic: str, fail: bool) -> None:
    await wf.step(
        BrokerCall("bus", topic, {"event": "booked"}),
        compensate=BrokerCall("bus", topic, {"event": "cancelled"}),
    )
    if fail:
        raise legato.Failure("refused")


@pytest.fixture(params=sorted(BROKERS))
async def bus(request: pytest.FixtureRequest, log_url: str) -> AsyncIterator[tuple[Any, Any]]:
    url, port = BROKERS[request.param]
    need_service(request.param, port_problem(port))
    consumer = broker_from_url(url)
    await consumer.connect()
    topic = f"wf{uuid.uuid4().hex[:10]}"
    await consumer.declare(topic, "audit")
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1, brokers={"bus": url}) as c:
        try:
            yield c, (consumer, topic)
        finally:
            with contextlib.suppress(Exception):
                await consumer.delete(topic, ["audit"])
            await consumer.close()


async def test_a_message_step_is_published_to_a_real_broker_and_its_undo_too(
    bus: tuple[Coordinator, Any],
) -> None:
    c, (consumer, topic) = bus
    done = await (await c.start_workflow(announce, topic, False)).result(timeout=15)
    failed = await (await c.start_workflow(announce, topic, True)).result(timeout=15)
    assert done.succeeded and failed.status is TxStatus.FAILED
    sub = await consumer.subscribe(topic, "audit", "test")
    got: list[tuple[str, str]] = []
    try:
        async with asyncio.timeout(10):
            async for d in sub:
                got.append((d.message.headers["gid"], d.message.body.decode()))
                await d.ack()
                if len(got) == 3:
                    break
    finally:
        await sub.close()
    assert sorted(got) == sorted(
        [
            (done.gid, '{"event": "booked"}'),
            (failed.gid, '{"event": "booked"}'),
            (failed.gid, '{"event": "cancelled"}'),
        ]
    )
