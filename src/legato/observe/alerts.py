"""Alerts: a webhook called when a transaction becomes stuck.

A transaction is stuck when an op ran out of retries and nothing more will
happen without an operator: a compensation past its retry limit (Legato never
gives one up silently), a TCC cancel or an XA rollback likewise, or a saga whose
definition changed under it. The webhook receives one JSON object per such
transaction::

    {"alert": "stuck", "gid": "...", "mode": "saga", "name": "book_trip",
     "status": "aborting", "reason": "compensate car: ...",
     "compensation_exhausted": true, "ops": [{"branch": "car", "op": "compensate",
     "attempts": 20, "error": "HTTP 500: ..."}], "at": 1764126000.5}

It is posted in the background (the coordinator never waits for it), retried
a few times with backoff; a webhook still failing is logged and given up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from .._hooks import Hooks
from .._model import OpStatus, TxRecord
from .timeline import BACKWARD

if TYPE_CHECKING:
    from ..modes._core import TxState

logger = logging.getLogger("legato.alerts")


class Webhook(Hooks):
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            from .._errors import DefinitionError

            raise DefinitionError(f"an alert webhook needs an http(s) URL, not {url!r}")
        self.url = url
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.headers = dict(headers or {})
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    def after_write(self, tx: TxRecord, state: TxState, before: TxState) -> None:
        if not state.stuck or state.stuck == before.stuck:
            return
        exhausted = [
            {"branch": b, "op": str(o), "attempts": s.attempts, "error": s.error}
            for (b, o), s in state.ops.items()
            if s.status is OpStatus.RETRY_WAIT and s.next_at is None  # parked: out of retries
        ]
        body: dict[str, Any] = {
            "alert": "stuck",
            "gid": tx.gid,
            "mode": str(tx.mode),
            "name": tx.name,
            "status": str(state.status),
            "reason": state.stuck,
            "compensation_exhausted": any(o["op"] in BACKWARD for o in exhausted),
            "ops": exhausted,
            "at": time.time(),
        }
        task = asyncio.get_running_loop().create_task(self._post(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        delay = self.backoff
        problem = ""
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in range(1, self.attempts + 1):
                try:
                    response = await client.post(self.url, json=body, headers=self.headers)
                    if response.status_code < 300:
                        self.sent += 1
                        return
                    problem = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if attempt < self.attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        self.failed += 1
        logger.error(
            "alert webhook %s failed for %s: %s",
            self.url,
            body["gid"],
            problem,
            extra={"gid": body["gid"]},
        )

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for alerts still being posted (at shutdown, in tests)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
