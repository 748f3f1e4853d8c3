"""The HTTP transport: an op is a call to a participant's URL (DESIGN section 5).

The coordinator calls ``POST url?gid=..&trans_type=..&branch_id=..&op=..`` with
the branch's body, plus ``Idempotency-Key`` and ``traceparent`` headers and
any extra headers the transaction carries. The status code decides; the
``dtm_result`` field of a JSON body comes second; a body is never searched
for a substring:

======================================  =========
2xx                                     ok
409, or ``{"dtm_result": "FAILURE"}``   failed (definite)
425, or ``{"dtm_result": "ONGOING"}``   ongoing (ask again at the fixed interval)
anything else, a timeout, no connection unknown (retried with backoff)
======================================  =========

A participant cannot hurt the coordinator with its answer (DESIGN section 10). The
body is read as it arrives, inflated as it arrives when it is compressed, and only
up to ``max_answer_bytes`` (1 MiB unless configured): a larger one, by its
``Content-Length`` or once the bytes read pass the cap, is abandoned there and its
connection closed. The whole attempt, body included, ends within its timeout. An
answer that cannot be read whole (over the cap, cut off, not decodable, its body
late) is **unknown**, whatever its status: the status alone is not trusted when
the rest of the answer, which might say ``FAILURE``, is unread or broken. The op
is retried; a participant that answers so every time uses up the op's attempts,
and the transaction ends as the mode's rules say for an unknown outcome (an
action's saga rolls back; a compensation, or a pivot, parks it as stuck, with
the reason, for an operator). A 2xx JSON body of up to 64 KiB becomes the op's
output; a larger one, or one the log could not store as it is (``NaN``, a lone
surrogate, nesting past ``legato._json.MAX_DEPTH``), is not kept.

Any other exception while calling (aiohttp refusing a header value with CR or LF
in it, say) is an unknown outcome too, with its type and message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .. import _json
from .._bounds import check_headers
from .._errors import DefinitionError, PayloadError
from .._model import Json
from ..observe.tracing import gid_traceparent
from .base import AttemptResult, Done, OpAttempt

DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
"""The largest answer body read from a participant, inflated (see the module docstring)."""
_MAX_OUTPUT = 64 * 1024  # a larger answer is not kept as the op's output
_MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class HttpCall:
    """An op carried out by an HTTP participant.

    ``body`` is sent as the request body: a ``str`` as it is (DTM sends each
    step's payload as JSON text), anything else encoded as JSON; ``None`` sends
    no body. ``timeout`` bounds each request (seconds; the coordinator's
    default when ``None``); ``headers`` are added to every call of this op.

    >>> HttpCall("http://flights:8000/reserve", body={"seats": 2})  # doctest: +SKIP
    """

    url: str
    body: Json = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    method: str = "POST"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise DefinitionError(f"an HTTP op needs an http(s) URL, not {self.url!r}")
        if self.method not in ("POST", "GET", "PUT"):
            raise DefinitionError(f"an HTTP op's method is POST, PUT or GET, not {self.method!r}")
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float) and 0 < self.timeout < 3600
        ):
            raise DefinitionError(f"a request timeout is 0-3600 s, not {self.timeout!r}")
        check_headers(self.headers)

    @property
    def target(self) -> str:
        """How the op is shown in the log."""
        return f"{self.method} {self.url}"

    def content(self) -> bytes | None:
        if self.body is None:
            return None
        if isinstance(self.body, str):
            return self.body.encode()
        return _json.compact(self.body).encode()

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {"url": self.url}
        if self.body is not None:
            out["body"] = self.body
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.method != "POST":
            out["method"] = self.method
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> HttpCall:
        return HttpCall(
            url=data["url"],
            body=data.get("body"),
            headers=dict(data.get("headers") or {}),
            timeout=data.get("timeout"),
            method=data.get("method", "POST"),
        )


class HttpTransport:
    """Calls HTTP participants through one pooled ``aiohttp`` session.

    aiohttp rather than httpx, which the tests and clients use: measured on two
    cores, one httpx request cost the coordinator 1.0 ms of CPU (1.7 ms with 16 in
    flight) against aiohttp's 0.2 ms, and a saga makes one request per op.

    ``max_answer_bytes`` caps the body read from any answer, inflated (see the module
    docstring); aiohttp (3.13.3 and later) inflates a compressed body a bounded piece
    at a time, as it is read, so what is never read is never inflated.
    """

    def __init__(
        self,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_connections: int = 256,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        if isinstance(max_answer_bytes, bool) or not (
            isinstance(max_answer_bytes, int) and max_answer_bytes > 0
        ):
            raise ValueError(
                f"max_answer_bytes is a positive whole number of bytes, not {max_answer_bytes!r}"
            )
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    remote = True  # a call leaves this process: a client span, the trace's headers

    def _client(self) -> aiohttp.ClientSession:
        # made on first use: a session belongs to the running event loop
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=0, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, raise_for_status=False
            )
        return self._session

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def start(
        self, call: HttpCall, attempt: OpAttempt, *, timeout: float | None, done: Done
    ) -> asyncio.Task[None]:
        """Start one attempt; ``done(result)`` is called on the event loop, once."""

        async def run() -> None:
            done(await self.call(call, attempt, timeout=timeout))

        return asyncio.get_running_loop().create_task(run())

    async def call(
        self, call: HttpCall, attempt: OpAttempt, *, timeout: float | None
    ) -> AttemptResult:
        """One attempt of one op, classified (see the module docstring)."""
        limit = call.timeout or timeout or self.request_timeout
        op = str(attempt.op)
        headers = {
            **attempt.headers,
            **call.headers,
            "Idempotency-Key": f"{attempt.gid}/{attempt.branch}/{op}",
            "Legato-Attempt": str(attempt.attempt),
        }
        if "traceparent" not in headers:  # the coordinator passes the attempt span's
            headers["traceparent"] = gid_traceparent(attempt.gid)
        content = call.content()
        if content is not None:
            headers.setdefault("Content-Type", "application/json")
        params = {
            "gid": attempt.gid,
            "trans_type": attempt.mode,
            "branch_id": attempt.branch,
            "op": op,
        }
        status: int | None = None  # once the answer's head has arrived
        try:
            async with self._client().request(
                call.method,
                call.url,
                params=params,
                data=content,
                headers=headers,
                # total: from the connection to the body's last byte
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await _read(response, self.max_answer_bytes)
                return classify(status, body, response.headers)
        except _Unread as exc:
            return AttemptResult.unknown(f"HTTP {status} from {call.url}: {exc}")
        except TimeoutError:
            if status is None:
                return AttemptResult.unknown(f"no answer within {limit}s from {call.url}")
            why = f"its body did not arrive in full within {limit}s"
            return AttemptResult.unknown(f"HTTP {status} from {call.url}: {why}")
        except aiohttp.ClientPayloadError as exc:  # cut off, or not decodable
            why = "its body is broken: " + str(exc).replace("\n", " ")
            return AttemptResult.unknown(f"HTTP {status} from {call.url}: {why}")
        except (aiohttp.ClientError, ValueError) as exc:
            # ValueError: aiohttp refuses a header value with CR or LF, say, at every attempt
            return AttemptResult.unknown(f"{type(exc).__name__} calling {call.url}: {exc}")


class _Unread(Exception):
    """Why an answer's body was not read."""


async def _read(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The answer's body, inflated, or ``_Unread`` once it passes ``cap`` bytes."""
    declared = response.content_length  # of the body as sent: compressed, if it is
    if declared is not None and declared > cap:
        response.close()  # never reused: the rest of the body is still on its way
        raise _Unread(f"its body is {declared} bytes, over the cap of {cap} (max_answer_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > cap:
            response.close()
            raise _Unread(f"its body passed the cap of {cap} bytes (max_answer_bytes)")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def classify(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> AttemptResult:
    """Turn a participant's answer into an attempt's result (see the module docstring)."""
    parsed = _parse(body, headers)
    result = parsed.get("dtm_result") if isinstance(parsed, dict) else None
    if status == 409 or (200 <= status < 300 and result == "FAILURE"):
        return AttemptResult.failed(_reason(status, parsed, body))
    if status == 425 or (200 <= status < 300 and result == "ONGOING"):
        return AttemptResult.ongoing(_reason(status, parsed, body))
    if 200 <= status < 300:
        return AttemptResult.ok(_output(parsed) if len(body) <= _MAX_OUTPUT else None)
    return AttemptResult.unknown(_reason(status, parsed, body))


def _output(parsed: Json) -> Json:
    """What of an answer the log keeps as the op's output: JSON the log can store as it
    is (json.loads takes ``NaN`` and lone surrogates; the log refuses them)."""
    try:
        return _json.check(parsed, what="output")
    except PayloadError:
        return None


def _parse(body: bytes, headers: Mapping[str, str] | None) -> Json:
    if not body:
        return None
    kind = (headers or {}).get("content-type", "application/json")
    if "json" not in kind:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        return None


def _reason(status: int, parsed: Json, body: bytes) -> str:
    if isinstance(parsed, dict):
        message = parsed.get("message") or parsed.get("detail") or parsed.get("error")
        if isinstance(message, str) and message:
            return f"HTTP {status}: {message[:_MAX_REASON]}"
    text = body[:_MAX_REASON].decode(errors="replace").strip()
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"
