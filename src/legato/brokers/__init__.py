"""Message brokers behind one port (``Broker``): RabbitMQ, NATS JetStream, Redis Streams.

>>> broker = broker_from_url("amqp://guest:guest@127.0.0.1:5672/")   # doctest: +SKIP
>>> await broker.connect()                                           # doctest: +SKIP
>>> await broker.declare("orders", "payments")                       # doctest: +SKIP
>>> await broker.publish(Message("orders", "order-7", b"{...}", id="evt-1",
...                              headers={"gid": "order-7"}))        # doctest: +SKIP
>>> sub = await broker.subscribe("orders", "payments", "payments-1") # doctest: +SKIP
>>> async for delivery in sub:                                       # doctest: +SKIP
...     handle(delivery.message); await delivery.ack()

The drivers (aio-pika, nats-py, redis) are the ``brokers`` extra; an adapter's
module imports its own only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .._errors import BrokerError
from .base import Broker, Delivery, Message, Subscription, check_name

__all__ = [
    "Broker",
    "BrokerError",
    "Delivery",
    "Message",
    "Subscription",
    "broker_from_url",
    "check_name",
]


def broker_from_url(url: str, **options: Any) -> Broker:
    """The adapter for ``amqp://`` (RabbitMQ), ``nats://`` (JetStream) or ``redis://``."""
    scheme = urlsplit(url).scheme
    if scheme in ("amqp", "amqps"):
        from .rabbitmq import RabbitMqBroker

        return RabbitMqBroker(url, **options)
    if scheme in ("nats", "tls"):
        from .nats import NatsBroker

        return NatsBroker(url, **options)
    if scheme in ("redis", "rediss"):
        from .redis import RedisBroker

        return RedisBroker(url, **options)
    raise ValueError(f"a broker URL is amqp://, nats:// or redis://, not {url!r}")
