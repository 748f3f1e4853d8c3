"""RabbitMQ through aio-pika: one durable topic exchange, a durable queue per group.

A message is published persistent, to the exchange with its topic as routing key,
``mandatory`` and with publisher confirms: it is the broker's once ``publish``
returns, and a message no group's queue would take is refused (``BrokerError``),
not dropped. A group is the queue ``<topic>.<group>``, bound to the topic; its
consumers share it. Each subscription has its own channel: closing it (or a
consumer dying) puts back what it had not acked, which RabbitMQ redelivers at
once, flagged redelivered.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from .._errors import BrokerError
from .base import Delivery, Message, Subscription, check_name

KEY = "legato-key"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RabbitMqDelivery:
    def __init__(self, topic: str, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        headers = {k: _text(v) for k, v in (incoming.headers or {}).items()}
        key = headers.pop(KEY, "")
        self._incoming = incoming
        self.message = Message(topic, key, incoming.body, incoming.message_id or "", headers)
        self.redelivered = bool(incoming.redelivered)

    async def ack(self) -> None:
        try:
            await self._incoming.ack()
        except aio_pika.exceptions.AMQPException as exc:
            raise BrokerError(f"RabbitMQ ack failed: {exc!r}") from exc


class RabbitMqSubscription:
    def __init__(
        self, channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue, topic: str
    ) -> None:
        self._channel = channel
        self._iterator = queue.iterator()
        self._topic = topic

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        async for incoming in self._iterator:
            yield RabbitMqDelivery(self._topic, incoming)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._iterator.close()
        with contextlib.suppress(Exception):
            await self._channel.close()


class RabbitMqBroker:
    """``amqp://user:password@host:5672/vhost``."""

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        exchange: str = "legato",
        prefetch: int = 64,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.prefetch = prefetch
        self.timeout = timeout
        self._conn: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def connect(self) -> None:
        try:
            self._conn = await aio_pika.connect_robust(self.url, timeout=self.timeout)
            self._channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self._channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except (TimeoutError, aio_pika.exceptions.AMQPException, OSError) as exc:
            raise BrokerError(f"cannot reach RabbitMQ at {self.url}: {exc!r}") from exc

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = self._channel = self._exchange = None

    def _ready(self) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractExchange]:
        if self._conn is None or self._exchange is None:
            raise BrokerError("the broker is not connected: await connect() first")
        return self._conn, self._exchange

    async def declare(self, topic: str, group: str) -> None:
        check_name("topic", topic)
        check_name("group", group)
        conn, exchange = self._ready()
        try:
            async with conn.channel() as ch:
                queue = await ch.declare_queue(f"{topic}.{group}", durable=True)
                await queue.bind(exchange.name, routing_key=topic)
        except aio_pika.exceptions.AMQPException as exc:
            raise BrokerError(f"declaring {topic}.{group} failed: {exc!r}") from exc

    async def publish(self, message: Message) -> None:
        _, exchange = self._ready()
        outgoing = aio_pika.Message(
            message.body,
            headers={**message.headers, KEY: message.key},
            message_id=message.id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await exchange.publish(
                outgoing, routing_key=message.topic, mandatory=True, timeout=self.timeout
            )
        except aio_pika.exceptions.DeliveryError as exc:
            raise BrokerError(
                f"RabbitMQ did not take message {message.id} on {message.topic!r} "
                f"(no group declared for it?): {exc!r}"
            ) from exc
        except (TimeoutError, aio_pika.exceptions.AMQPException, OSError) as exc:
            raise BrokerError(f"publishing {message.id} to RabbitMQ failed: {exc!r}") from exc

    async def subscribe(self, topic: str, group: str, consumer: str) -> Subscription:
        await self.declare(topic, group)
        conn, _ = self._ready()
        try:
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(f"{topic}.{group}", durable=True)
        except aio_pika.exceptions.AMQPException as exc:
            raise BrokerError(f"subscribing to {topic}.{group} failed: {exc!r}") from exc
        return RabbitMqSubscription(channel, queue, topic)

    async def delete(self, topic: str, groups: Sequence[str] = ()) -> None:
        """Remove the groups' queues (tests, retired topics); the exchange stays."""
        conn, _ = self._ready()
        async with conn.channel() as ch:
            for group in groups:
                with contextlib.suppress(aio_pika.exceptions.AMQPException):
                    await ch.queue_delete(
                        f"{check_name('topic', topic)}.{check_name('group', group)}"
                    )
