"""The broker port: publish a message durably, consume it in a durable group, ack it.

Every adapter keeps the same promises, which ``tests/brokers`` checks against the
real servers:

* ``publish`` returns once the broker has the message durably (RabbitMQ's
  publisher confirm, JetStream's publish ack, Redis's ``XADD`` reply); an error
  means it may not have it, and the publisher tries again (consumers dedupe by
  ``Message.id``).
* A *group* is a durable consumer: every message published to its topic after
  the group was declared (``declare``) reaches the group once, whichever of the
  group's consumers takes it. A message a consumer took but did not ack (it
  died, or closed) is delivered again, flagged ``redelivered`` (on JetStream the
  flag is its delivery count, a hint: once seen 1 on a redelivery under load): at
  once on RabbitMQ, after ``redeliver_after`` seconds on JetStream and Redis.
* One consumer sees one key's messages in the order they were published.
* Headers travel with the message (``gid``, ``traceparent``, ...), as strings.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def check_name(what: str, value: str) -> str:
    """Topic and group names: 1-100 letters, digits, '_' or '-' (every broker's subset)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"a {what} is 1-100 letters, digits, '_' or '-', not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Message:
    """One event: ``key`` orders it among its topic's messages (an order id, say);
    ``id`` is unique, for the consumer's inbox."""

    topic: str
    key: str
    body: bytes
    id: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("topic", self.topic)
        if not self.id or not isinstance(self.id, str):
            raise ValueError("a message needs an id (a unique string)")
        if not isinstance(self.body, bytes):
            raise TypeError(f"a message body is bytes, not {type(self.body).__name__}")


class Delivery(Protocol):
    """A message as a consumer received it; ``ack`` once its effect is committed."""

    @property
    def message(self) -> Message: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...


class Subscription(Protocol):
    """One consumer of a group: iterate over its deliveries; ``close`` stops it
    (what it took and did not ack goes back to the group)."""

    def __aiter__(self) -> AsyncIterator[Delivery]: ...

    async def close(self) -> None: ...


class Broker(Protocol):
    """One connection to a broker (see the module docstring for the promises)."""

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def declare(self, topic: str, group: str) -> None:
        """Create the topic and the durable group where they do not exist yet."""

    async def publish(self, message: Message) -> None: ...

    async def subscribe(self, topic: str, group: str, consumer: str) -> Subscription:
        """Start consuming as ``consumer`` (a name unique within the group)."""

    async def delete(self, topic: str, groups: Sequence[str] = ()) -> None:
        """Remove the topic's groups (and, where the broker keeps it, the topic)."""
