"""Idempotent consumers: a message's effect commits once per consumer group, however
often the broker delivers it.

::

    from legato.participant import inbox

    async for delivery in subscription:
        result = inbox.consume(conn, delivery.message, "payments", lambda c: charge(c, ...))
        await delivery.ack()        # after the commit: a crash before it redelivers,
                                    # and the second consume is skipped (result.skipped)

The record is a barrier row (trans_type ``inbox``, gid = the message id, branch =
the group, op ``consume``) inserted in the same local transaction as the effect:
it exists exactly when the effect committed. A redelivered or duplicated message
(the outbox relay may publish one twice, a consumer may die before its ack) finds
the row and changes nothing; two consumers racing on one message are ordered by
the row's unique key. The table is the barrier's (``create_table``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..brokers.base import Message
from .barrier import Barrier, BarrierResult
from .tracing import message_span

C = TypeVar("C")
T = TypeVar("T")

__all__ = ["aconsume", "consume"]


def _barrier(message: Message, group: str) -> Barrier:
    return Barrier("inbox", message.id, group, "consume")


def consume(conn: C, message: Message, group: str, fn: Callable[[C], T]) -> BarrierResult[T]:
    """Run ``fn(conn)`` as ``message``'s effect for ``group``, once: in a new local
    transaction with the message's inbox row (``conn`` outside any transaction). It
    runs in a consumer span continuing the trace the message's headers carry."""
    with message_span(message.topic, message.headers, f"consume {message.topic} {group}") as span:
        result = _barrier(message, group).call(conn, fn)
        span.set_attribute("legato.inbox.skipped", result.skipped)
        return result


async def aconsume(
    conn: C, message: Message, group: str, fn: Callable[[C], Awaitable[T]]
) -> BarrierResult[T]:
    """As :func:`consume`, on an asyncio connection."""
    with message_span(message.topic, message.headers, f"consume {message.topic} {group}") as span:
        result = await _barrier(message, group).acall(conn, fn)
        span.set_attribute("legato.inbox.skipped", result.skipped)
        return result
