"""An op that publishes to a broker topic (a msg branch that is an event, not an HTTP
call): the coordinator's own connection to the broker named, publisher-confirmed.

The message's id is ``<gid>/<branch>``, the same on every attempt, so a consumer's
inbox drops a repeat; its key is the gid unless given; its headers carry ``gid``
and ``traceparent`` (and the transaction's extra headers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import BrokerError, DefinitionError
from .._model import Json
from ..brokers.base import Broker, Message, check_name
from ..observe.tracing import headers_for
from ..saga import StepContext

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

    def bind(self, brokers: Mapping[str, Broker], headers: Mapping[str, str]) -> Any:
        """The op: an async step function publishing through ``brokers``."""

        async def publish(ctx: StepContext) -> None:
            broker = brokers.get(self.broker)
            if broker is None:
                raise BrokerError(f"no broker named {self.broker!r} is configured here")
            body = self.body
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            message = Message(
                self.topic,
                self.key or ctx.gid,
                data,
                id=f"{ctx.gid}/{ctx.step}",
                # the attempt's span is current here: the consumer continues its trace
                headers={**headers, "gid": ctx.gid, **headers_for(ctx.gid)},
            )
            await broker.publish(message)

        return publish


def is_broker_op(payload: Mapping[str, Any] | None) -> bool:
    return bool(payload) and (payload or {}).get("kind") == "broker"
