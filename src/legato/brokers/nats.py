"""NATS JetStream through nats-py: a stream per topic, a durable pull consumer per group.

A topic is the stream ``<prefix>_<topic>`` on the subject ``<prefix>.<topic>``,
kept on file; ``publish`` returns once JetStream acked the message (it also sets
``Nats-Msg-Id``, so a publish retried within the stream's duplicate window is
stored once). A group is a durable consumer with explicit acks, delivering what
is published after it was made; a message taken and not acked is delivered
again ``redeliver_after`` seconds later (the consumer's ack wait).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

from .._errors import BrokerError
from .base import Delivery, Message, Subscription, check_name

KEY = "legato-key"
ID = "Nats-Msg-Id"
_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, asyncio.TimeoutError)


class NatsDelivery:
    def __init__(self, topic: str, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        key = headers.pop(KEY, "")
        msg_id = headers.pop(ID, "")
        # NATS's own (Nats-Expected-Stream, ...) are not the publisher's
        headers = {k: v for k, v in headers.items() if not k.startswith("Nats-")}
        self._msg = msg
        self.message = Message(topic, key, msg.data, msg_id, headers)
        self.redelivered = msg.metadata.num_delivered > 1

    async def ack(self) -> None:
        try:
            await self._msg.ack_sync()
        except _ERRORS as exc:
            raise BrokerError(f"JetStream ack failed: {exc!r}") from exc


class NatsSubscription:
    def __init__(self, sub: JetStreamContext.PullSubscription, topic: str, batch: int) -> None:
        self._sub = sub
        self._topic = topic
        self._batch = batch

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        while True:
            try:
                msgs = await self._sub.fetch(self._batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                yield NatsDelivery(self._topic, msg)

    async def close(self) -> None:
        with contextlib.suppress(*_ERRORS):
            await self._sub.unsubscribe()


class NatsBroker:
    """``nats://host:4222`` (a server with JetStream enabled)."""

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
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
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: set[str] = set()

    def stream(self, topic: str) -> str:
        return f"{self.prefix}_{check_name('topic', topic)}"

    def subject(self, topic: str) -> str:
        return f"{self.prefix}.{topic}"

    async def connect(self) -> None:
        try:
            self._nc = await nats.connect(
                self.url, connect_timeout=self.timeout, allow_reconnect=True,
                max_reconnect_attempts=-1,
            )  # fmt: skip
        except _ERRORS as exc:
            raise BrokerError(f"cannot reach NATS at {self.url}: {exc!r}") from exc
        self._js = self._nc.jetstream(timeout=self.timeout)

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(*_ERRORS):
                await self._nc.close()
        self._nc = self._js = None
        self._streams.clear()

    def _ready(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerError("the broker is not connected: await connect() first")
        return self._js

    async def _ensure_stream(self, topic: str) -> str:
        name = self.stream(topic)
        if name in self._streams:
            return name
        js = self._ready()
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(
                    name=name, subjects=[self.subject(topic)], storage=StorageType.FILE
                )
            except nats.js.errors.BadRequestError:
                await js.stream_info(name)  # made at the same moment by another process
        except _ERRORS as exc:
            raise BrokerError(f"JetStream stream {name} unavailable: {exc!r}") from exc
        self._streams.add(name)
        return name

    async def declare(self, topic: str, group: str) -> None:
        check_name("group", group)
        name = await self._ensure_stream(topic)
        js = self._ready()
        try:
            await js.consumer_info(name, group)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                durable_name=group,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.redeliver_after,
                deliver_policy=DeliverPolicy.NEW,
                max_deliver=-1,
            )
            try:
                await js.add_consumer(name, config)
            except _ERRORS as exc:
                raise BrokerError(f"declaring group {group} on {name} failed: {exc!r}") from exc
        except _ERRORS as exc:
            raise BrokerError(f"declaring group {group} on {name} failed: {exc!r}") from exc

    async def publish(self, message: Message) -> None:
        name = await self._ensure_stream(message.topic)
        headers = {**message.headers, KEY: message.key, ID: message.id}
        try:
            await self._ready().publish(
                self.subject(message.topic), message.body, headers=headers, stream=name
            )
        except _ERRORS as exc:
            raise BrokerError(f"publishing {message.id} to JetStream failed: {exc!r}") from exc

    async def subscribe(self, topic: str, group: str, consumer: str) -> Subscription:
        await self.declare(topic, group)
        name = self.stream(topic)
        try:
            sub = await self._ready().pull_subscribe_bind(group, stream=name)
        except _ERRORS as exc:
            raise BrokerError(f"subscribing to {name}/{group} failed: {exc!r}") from exc
        return NatsSubscription(sub, topic, self.batch)

    async def delete(self, topic: str, groups: Sequence[str] = ()) -> None:
        """Remove the topic's stream and with it every group (tests, retired topics)."""
        name = self.stream(topic)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._ready().delete_stream(name)
        self._streams.discard(name)
