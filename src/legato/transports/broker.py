"""An op that publishes to a broker topic (a msg branch that is an event, not an HTTP
call): the coordinator's own connection to the broker named, publisher-confirmed.

The message's id is ``<gid>/<branch>``, the same on every attempt, so a consumer's
inbox drops a repeat; its key is the gid unless given; its headers carry ``gid``
and ``traceparent`` (and the transaction's extra headers).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import BrokerError, DefinitionError
from .._model import Json, OpName
from ..brokers.base import Broker, Message, check_name
from .base import AttemptResult, Done, OpAttempt

SCHEME = "broker"


@dataclass(frozen=True, slots=True)
class BrokerCall:
    broker: str  # the name the coordinator knows the broker by
    topic: str
    body: Json = None
    key: str | None = None

    def __post_init__(self) -> None:
        try:
            check_name("broker name", self.broker)
            check_name("topic", self.topic)
        except ValueError as exc:
            raise DefinitionError(str(exc)) from exc

    @staticmethod
    def from_url(url: str, body: Json = None) -> BrokerCall:
        """``broker://<name>/<topic>[?key=...]``."""
        parts = urlsplit(url)
        if parts.scheme != SCHEME or not parts.netloc or not parts.path.strip("/"):
            raise DefinitionError(f"a broker target is broker://<name>/<topic>, not {url!r}")
        key = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("key")
        return BrokerCall(parts.netloc, parts.path.strip("/"), body, key)

    @property
    def target(self) -> str:
        return f"publish {SCHEME}://{self.broker}/{self.topic}"

    def to_json(self) -> dict[str, Json]:
        return {
            "kind": "broker",
            "broker": self.broker,
            "topic": self.topic,
            "body": self.body,
            "key": self.key,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> BrokerCall:
        return BrokerCall(
            str(data["broker"]), str(data["topic"]), data.get("body"), data.get("key")
        )


class BrokerTransport:
    """Publishes ``BrokerCall``s through the brokers this coordinator knows, by name."""

    remote = True  # the message carries the trace's headers to its consumer

    def __init__(self, brokers: Mapping[str, Broker]) -> None:
        self.brokers = brokers

    def start(
        self, call: BrokerCall, attempt: OpAttempt, *, timeout: float | None, done: Done
    ) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                async with asyncio.timeout(timeout) as deadline:
                    await self.publish(call, attempt)
            except TimeoutError as exc:
                expired = deadline.expired()
                why = f"attempt timed out after {timeout}s" if expired else f"TimeoutError: {exc}"
                done(AttemptResult.unknown(why))
            except Exception as exc:
                done(AttemptResult.unknown(f"{type(exc).__name__}: {exc}"))
            else:
                done(AttemptResult.ok())

        return asyncio.get_running_loop().create_task(run())

    async def publish(self, call: BrokerCall, attempt: OpAttempt) -> None:
        broker = self.brokers.get(call.broker)
        if broker is None:
            raise BrokerError(f"no broker named {call.broker!r} is configured here")
        body = call.body
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        message = Message(
            call.topic,
            call.key or attempt.gid,
            data,
            # unique per op: a compensation's message is not its action's repeated (a
            # broker or an inbox that drops repeats by id would drop it)
            id=f"{attempt.gid}/{attempt.branch}"
            + ("" if attempt.op is OpName.ACTION else f"/{attempt.op}"),
            # the transaction's headers and the attempt span's: the consumer continues
            # its trace
            headers={**attempt.headers, "gid": attempt.gid},
        )
        await broker.publish(message)


def is_broker_op(payload: Mapping[str, Any] | None) -> bool:
    return bool(payload) and (payload or {}).get("kind") == "broker"
