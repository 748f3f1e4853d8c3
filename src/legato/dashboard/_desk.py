"""What the dashboard reads and asks through: a coordinator's log, or a log alone.

Under ``legato serve`` the operator's requests go through the coordinator, which
hands one at once to the transaction's runner when it drives it. ``legato
dashboard`` has no coordinator: it records the request in the log, and whichever
coordinator drives (or next claims) the transaction carries it out.
"""

from __future__ import annotations

import time
from typing import Protocol

from ..coordinator import Coordinator
from ..flow import operator_request as flow_request
from ..log import Log

BY = "dashboard"
"""Who asked, as recorded with each request."""

ACTIONS = ("retry", "abort", "succeeded", "failed")
"""The requests the page may make: retry, abort (cancel), and a forced end."""


class Desk(Protocol):
    @property
    def log(self) -> Log: ...

    async def request(self, gid: str, what: str) -> None:
        """Record ``what`` (one of ``ACTIONS``) for ``gid``; raises
        ``TransactionNotFound`` or ``IllegalStateChange``."""


class CoordinatorDesk:
    """The dashboard of ``legato serve``: requests go through its coordinator."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    @property
    def log(self) -> Log:
        return self.coordinator.log

    async def request(self, gid: str, what: str) -> None:
        c = self.coordinator
        await c.get(gid)  # TransactionNotFound before anything is written
        if what == "retry":
            await c.retry(gid, by=BY)
        elif what == "abort":
            await c.abort(gid, by=BY)
        else:
            await c.force_end(gid, what, by=BY)


class LogDesk:
    """The dashboard of ``legato dashboard``: requests are written to the log."""

    def __init__(self, log: Log) -> None:
        self._log = log

    @property
    def log(self) -> Log:
        return self._log

    async def request(self, gid: str, what: str) -> None:
        assert what in ACTIONS
        if await flow_request(self._log, gid, what, by=BY) is None:
            await self._log.request(gid, what, time.time(), by=BY)
