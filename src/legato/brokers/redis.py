"""Redis Streams through redis-py (asyncio): a stream per topic, a consumer group per group.

A topic is the stream ``<prefix>:<topic>``; ``publish`` is an ``XADD`` (the entry
holds the message's id, key, body and headers), durable as far as the server's
own persistence (``appendonly``) makes it. A group is a consumer group created at
``$``: it gets what is published after it was made. A consumer reads with
``XREADGROUP``; what it took and did not ack stays in the group's pending list,
and any consumer of the group claims it (``XAUTOCLAIM``) once it has been idle
``redeliver_after`` seconds; a consumer restarted under its old name first
re-reads its own pending entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from .._errors import BrokerError
from .base import Delivery, Message, Subscription, check_name

_HEADER = b"h:"


def _entry(message: Message) -> dict[bytes, bytes]:
    fields = {b"id": message.id.encode(), b"key": message.key.encode(), b"body": message.body}
    for k, v in message.headers.items():
        fields[_HEADER + k.encode()] = v.encode()
    return fields


class RedisDelivery:
    def __init__(
        self, broker: RedisBroker, topic: str, group: str, entry_id: bytes,
        fields: dict[bytes, bytes], redelivered: bool,
    ) -> None:  # fmt: skip
        headers = {
            k[len(_HEADER) :].decode(): v.decode()
            for k, v in fields.items()
            if k.startswith(_HEADER)
        }
        self._broker, self._group, self._entry_id = broker, group, entry_id
        self.message = Message(
            topic,
            fields.get(b"key", b"").decode(),
            fields.get(b"body", b""),
            fields.get(b"id", entry_id).decode(),
            headers,
        )
        self.redelivered = redelivered

    async def ack(self) -> None:
        stream = self._broker.stream(self.message.topic)
        try:
            await self._broker.client().xack(stream, self._group, self._entry_id)
        except redis.exceptions.RedisError as exc:
            raise BrokerError(f"Redis XACK failed: {exc!r}") from exc


_CLOSE_WAIT = 2.0
"""Seconds a subscription waits for its connection to close when it stops."""


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a read or close that failed after its subscription stopped


class RedisSubscription:
    """A consumer's reads go through a connection of its own, not the broker's pool.

    redis-py does not always let a task's cancellation end a blocking ``XREADGROUP``:
    now and then the cancelled task stays blocked in the read, and the connection
    with it (seen here about once in a hundred cancels, and reported upstream, e.g.
    redis-py issues 2028 and 2579). So each read runs in a task of its own that this
    subscription awaits; when the consumer is cancelled, or ``close()`` is called, the
    subscription closes its connection (waiting at most ``_CLOSE_WAIT`` for that),
    which ends any read still blocked on it; what such a read took stays pending in
    the group and is claimed again. A consumer stops promptly whatever the read was
    doing, and no connection is left blocked.
    """

    def __init__(self, broker: RedisBroker, topic: str, group: str, consumer: str) -> None:
        self._broker, self._topic, self._group, self._consumer = broker, topic, group, consumer
        self._closed = False
        self._reader: aioredis.Redis | None = None
        self._reads: set[asyncio.Task[Any]] = set()

    def _delivery(self, entry_id: bytes, fields: Any, redelivered: bool) -> RedisDelivery:
        return RedisDelivery(self._broker, self._topic, self._group, entry_id, fields, redelivered)

    async def _read(self, call: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        if self._reader is None:
            self._reader = self._broker.new_client()
        read = asyncio.ensure_future(call(self._reader))
        self._reads.add(read)
        try:
            await asyncio.wait({read})  # a cancel always reaches this frame
        except BaseException:
            await self._drop_reader()
            raise
        finally:
            self._reads.discard(read)
        return read.result()

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        reads, self._reads = set(self._reads), set()
        for read in reads:
            read.cancel()
            # not waited for: a read that ignores its cancel ends when its connection
            # closes or its BLOCK runs out; what it took stays pending, claimed later
            read.add_done_callback(_retrieve)
        if reader is not None:
            # closes the connection, in use or not: a read blocked on it ends
            closing = asyncio.ensure_future(reader.aclose())
            closing.add_done_callback(_retrieve)
            await asyncio.wait({closing}, timeout=_CLOSE_WAIT)

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        stream = self._broker.stream(self._topic)
        count = self._broker.batch
        group, consumer = self._group, self._consumer
        try:
            # this consumer's own pending entries first: a restart under the same name
            own: Any = await self._read(
                lambda r: r.xreadgroup(group, consumer, {stream: "0"}, count=10_000)
            )
            for _, entries in own or []:
                for entry_id, fields in entries:
                    if fields:  # an entry trimmed away meanwhile comes back empty
                        yield self._delivery(entry_id, fields, True)
            next_claim = 0.0
            idle_ms = int(self._broker.redeliver_after * 1000)
            while not self._closed:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + max(self._broker.redeliver_after / 2, 0.1)
                    _, claimed, *_ = await self._read(
                        lambda r: r.xautoclaim(stream, group, consumer, idle_ms, "0-0", count=count)
                    )
                    for entry_id, fields in claimed:
                        if fields:
                            yield self._delivery(entry_id, fields, True)
                got: Any = await self._read(
                    lambda r: r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=500)
                )
                for _, entries in got or []:
                    for entry_id, fields in entries:
                        yield self._delivery(entry_id, fields, False)
        except redis.exceptions.RedisError as exc:
            if self._closed:
                return  # close() shut the connection under a read
            raise BrokerError(f"reading {stream} as {group}/{consumer}: {exc!r}") from exc
        finally:
            await self._drop_reader()

    async def close(self) -> None:
        self._closed = True
        await self._drop_reader()


class RedisBroker:
    """``redis://host:6379/0``."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "legato",
        redeliver_after: float = 30.0,
        batch: int = 32,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.prefix = check_name("prefix", prefix)
        self.redeliver_after = redeliver_after
        self.batch = batch
        self.timeout = timeout
        self._client: aioredis.Redis | None = None
        self._subscriptions: weakref.WeakSet[RedisSubscription] = weakref.WeakSet()

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:{check_name('topic', topic)}"

    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise BrokerError("the broker is not connected: await connect() first")
        return self._client

    def new_client(self) -> aioredis.Redis:
        """A client (a connection pool) of its own, connecting at its first command."""
        return aioredis.from_url(self.url, socket_timeout=self.timeout + 1)

    async def connect(self) -> None:
        client = self.new_client()
        try:
            await client.ping()
        except redis.exceptions.RedisError as exc:
            await client.aclose()
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc!r}") from exc
        self._client = client

    async def close(self) -> None:
        """Close every subscription's connection too: a consumer still reading ends."""
        for sub in list(self._subscriptions):
            await sub.close()
        if self._client is not None:
            with contextlib.suppress(redis.exceptions.RedisError):
                await self._client.aclose()
        self._client = None

    async def declare(self, topic: str, group: str) -> None:
        check_name("group", group)
        try:
            await self.client().xgroup_create(self.stream(topic), group, id="$", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise BrokerError(f"declaring group {group} on {topic}: {exc!r}") from exc
        except redis.exceptions.RedisError as exc:
            raise BrokerError(f"declaring group {group} on {topic}: {exc!r}") from exc

    async def publish(self, message: Message) -> None:
        try:
            await self.client().xadd(self.stream(message.topic), _entry(message))  # type: ignore[arg-type]
        except redis.exceptions.RedisError as exc:
            raise BrokerError(f"publishing {message.id} to Redis failed: {exc!r}") from exc

    async def subscribe(self, topic: str, group: str, consumer: str) -> Subscription:
        await self.declare(topic, group)
        sub = RedisSubscription(self, topic, group, check_name("consumer", consumer))
        self._subscriptions.add(sub)
        return sub

    async def delete(self, topic: str, groups: Sequence[str] = ()) -> None:
        """Remove the topic's stream and with it every group (tests, retired topics)."""
        await self.client().delete(self.stream(topic))
