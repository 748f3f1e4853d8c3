"""A Redis consumer stops when it is told to, whatever redis-py's blocking read does.

redis-py has been seen to leave a cancelled task blocked in ``XREADGROUP`` (about one
cancel in a hundred here; the shop demo's teardown then waited for ever). These tests
make that happen every time, against the real server: the client's read swallows the
cancel and goes on reading with a long ``BLOCK``, as the bug does. The subscription
must still end at once on a cancel, and on ``close()`` from another task, and leave
no connection of its own open.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from legato.brokers import Message
from legato.brokers.redis import RedisBroker
from tests.support.services import need_service, port_problem


@pytest.fixture
async def broker() -> AsyncIterator[RedisBroker]:
    need_service("redis", port_problem(6379))
    b = RedisBroker("redis://127.0.0.1:6379/0", redeliver_after=1.0)
    await b.connect()
    b.topics: list[str] = []  # type: ignore[misc]
    try:
        yield b
    finally:
        for topic in b.topics:  # type: ignore[attr-defined]
            await b.delete(topic)
        await b.close()


class Stubborn:
    """What the stubborn reads did: the cancels they swallowed, the clients they used."""

    def __init__(self) -> None:
        self.swallowed = 0
        self.readers: list[aioredis.Redis] = []

    def addresses(self) -> set[str]:
        """The readers' connections' local addresses, as the server lists its clients."""
        out = set()
        for reader in self.readers:
            pool = reader.connection_pool
            for conn in [*pool._in_use_connections, *pool._available_connections]:
                writer = getattr(conn, "_writer", None)
                if writer is not None:
                    host, port = writer.get_extra_info("sockname")[:2]
                    out.add(f"{host}:{port}")
        return out


@pytest.fixture
def stubborn_reads(monkeypatch: pytest.MonkeyPatch) -> Stubborn:
    """Every blocking XREADGROUP (made 8 s long) swallows a cancel and stays blocked on
    its connection, as the bug does; it ends when its BLOCK runs out or the connection
    closes."""
    real = aioredis.Redis.xreadgroup
    seen = Stubborn()

    async def xreadgroup(self: aioredis.Redis, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("block") is None:
            return await real(self, *args, **kwargs)
        if self not in seen.readers:
            seen.readers.append(self)
        read = asyncio.ensure_future(real(self, *args, **{**kwargs, "block": 8000}))
        while True:
            try:
                return await asyncio.shield(read)
            except asyncio.CancelledError:
                if read.done():
                    raise
                seen.swallowed += 1

    monkeypatch.setattr(aioredis.Redis, "xreadgroup", xreadgroup)
    return seen


async def _consumer(broker: RedisBroker, topic: str, got: list[str]) -> None:
    sub = await broker.subscribe(topic, "g", "c")
    try:
        async for d in sub:
            got.append(d.message.id)
            await d.ack()
    finally:
        await sub.close()


async def _reading(broker: RedisBroker) -> tuple[str, list[str], asyncio.Task[None]]:
    topic = f"stop{uuid.uuid4().hex[:10]}"
    broker.topics.append(topic)  # type: ignore[attr-defined]
    await broker.declare(topic, "g")
    got: list[str] = []
    task = asyncio.create_task(_consumer(broker, topic, got))
    await broker.publish(Message(topic, "k", b"{}", id="m1"))
    async with asyncio.timeout(10):
        while not got:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # now blocked in the next read
    return topic, got, task


async def _blocked(addresses: set[str]) -> list[dict[str, Any]]:
    """Those of the server's clients at ``addresses`` blocked in an XREADGROUP."""
    probe = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        clients = await probe.client_list()
    finally:
        await probe.aclose()
    return [
        c
        for c in clients
        if c.get("addr") in addresses and "b" in c.get("flags", "") and c.get("cmd") == "xreadgroup"
    ]


async def test_a_cancelled_consumer_ends_though_its_read_ignores_the_cancel(
    broker: RedisBroker, stubborn_reads: Stubborn
) -> None:
    _, got, task = await _reading(broker)
    reading = stubborn_reads.addresses()
    assert await _blocked(reading), "the consumer was meant to be blocked in a read"
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=3)
    assert done == {task} and task.cancelled(), "the consumer did not end on its cancel"
    assert stubborn_reads.swallowed, "the read was meant to swallow the cancel"
    assert got == ["m1"]
    await asyncio.sleep(0.2)
    assert not await _blocked(reading), "the subscription left its read blocked"


async def test_close_from_another_task_ends_a_consumer_blocked_in_a_read(
    broker: RedisBroker, stubborn_reads: Stubborn
) -> None:
    _, _, task = await _reading(broker)
    await broker.close()  # closes every subscription: its blocked read ends
    done, _ = await asyncio.wait({task}, timeout=3)
    await broker.connect()  # for the fixture's clean-up
    assert done == {task}, "the consumer was still blocked after close()"
    assert task.exception() is None  # a close is a clean end, not a broker error
