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

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
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


class RedisSubscription:
    def __init__(self, broker: RedisBroker, topic: str, group: str, consumer: str) -> None:
        self._broker, self._topic, self._group, self._consumer = broker, topic, group, consumer
        self._closed = False

    def _delivery(self, entry_id: bytes, fields: Any, redelivered: bool) -> RedisDelivery:
        return RedisDelivery(self._broker, self._topic, self._group, entry_id, fields, redelivered)

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        r = self._broker.client()
        stream = self._broker.stream(self._topic)
        count = self._broker.batch
        try:
            # this consumer's own pending entries first: a restart under the same name
            own: Any = await r.xreadgroup(self._group, self._consumer, {stream: "0"}, count=10_000)
            for _, entries in own or []:
                for entry_id, fields in entries:
                    if fields:  # an entry trimmed away meanwhile comes back empty
                        yield self._delivery(entry_id, fields, True)
            next_claim = 0.0
            while not self._closed:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + max(self._broker.redeliver_after / 2, 0.1)
                    idle_ms = int(self._broker.redeliver_after * 1000)
                    _, claimed, *_ = await r.xautoclaim(
                        stream, self._group, self._consumer, idle_ms, "0-0", count=count
                    )
                    for entry_id, fields in claimed:
                        if fields:
                            yield self._delivery(entry_id, fields, True)
                got: Any = await r.xreadgroup(
                    self._group, self._consumer, {stream: ">"}, count=count, block=500
                )
                for _, entries in got or []:
                    for entry_id, fields in entries:
                        yield self._delivery(entry_id, fields, False)
        except redis.exceptions.RedisError as exc:
            raise BrokerError(
                f"reading {stream} as {self._group}/{self._consumer}: {exc!r}"
            ) from exc

    async def close(self) -> None:
        self._closed = True


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

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:{check_name('topic', topic)}"

    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise BrokerError("the broker is not connected: await connect() first")
        return self._client

    async def connect(self) -> None:
        client = aioredis.from_url(self.url, socket_timeout=self.timeout + 1)
        try:
            await client.ping()
        except redis.exceptions.RedisError as exc:
            await client.aclose()
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc!r}") from exc
        self._client = client

    async def close(self) -> None:
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
        return RedisSubscription(self, topic, group, check_name("consumer", consumer))

    async def delete(self, topic: str, groups: Sequence[str] = ()) -> None:
        """Remove the topic's stream and with it every group (tests, retired topics)."""
        await self.client().delete(self.stream(topic))
