"""uvicorn's HTTP protocol with deadlines: a client that is slow to send cannot hold
a connection for ever.

A connection must deliver each request's line and headers within
``header_timeout`` seconds of its first byte (or of connecting), at most
``MAX_HEADER_BYTES`` of them, and its body within ``body_timeout`` seconds of
its headers; otherwise it is closed. uvicorn has a keep-alive timeout between
requests but none while one is being read: 1,000 connections sending their
headers a byte at a time held their sockets as long as they liked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..settings import from_environment

MAX_HEADER_BYTES = 64 * 1024
"""The request line and headers together (a large cookie and a trace context fit)."""


class GuardedProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the deadlines (settings: ``header_timeout``,
    ``body_timeout``, read once per process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = from_environment()
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection from %s: too slow to send", self.client)
            self.transport.close()

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self.send_431_response()

    def send_431_response(self) -> None:
        msg = b"Request Header Fields Too Large"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
            b"content-length: " + str(len(msg)).encode() + b"\r\nconnection: close\r\n\r\n" + msg
        )
        self.transport.close()

    # -- uvicorn's callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        if not self.transport.is_closing():
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self.transport.is_closing():
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
