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

C = TypeVar("C")
T = TypeVar("T")

__all__ = ["aconsume", "consume"]


def _barrier(message: Message, group: str) -> Barrier:
    return Barrier("inbox", message.id, group, "consume")


def consume(conn: C, message: Message, group: str, fn: Callable[[C], T]) -> BarrierResult[T]:
    """Run ``fn(conn)`` as ``message``'s effect for ``group``, once: in a new local
    transaction with the message's inbox row (``conn`` outside any transaction)."""
    return _barrier(message, group).call(conn, fn)


async def aconsume(
    conn: C, message: Message, group: str, fn: Callable[[C], Awaitable[T]]
) -> BarrierResult[T]:
    """As :func:`consume`, on an asyncio connection."""
    return await _barrier(message, group).acall(conn, fn)
