"""Who approves the workflow demo's big trips: told of each one, they answer with a
signal after a moment's thought: yes, no, or (away from their desk) not at all.

Each answer is drawn from the seed and the trip's gid, like the faults: the same
seed gets the same answers whatever order the trips ask in.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from legato import Coordinator, IllegalStateChange

from .trip_workflow import APPROVAL

ASKED, APPROVED, REFUSED, UNANSWERED = "asked", "approved", "refused", "never answered"
THINKING = (0.05, 0.5)  # seconds before an answer: the shortest, the longest


@dataclass
class Approver:
    """Answers requests for approval: ``refuse`` and ``unanswered`` are the fractions
    (0 to 1) refused and never answered; ``draw(kind, gid)`` is the seed's draw."""

    draw: Callable[..., float]
    refuse: float
    unanswered: float
    tally: Counter[str] = field(default_factory=Counter)
    _asked: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _seen: set[str] = field(default_factory=set)

    def ask(self, gid: str, amount: int) -> None:
        """A trip waits for approval (told again when its step is retried: answered once)."""
        if gid not in self._seen:
            self._seen.add(gid)
            self.tally[ASKED] += 1
            self._asked.put_nowait(gid)

    def answer(self, gid: str) -> bool | None:
        """What is answered to ``gid``: approved, refused, or None (never answered)."""
        draw = self.draw("approval", gid)
        if draw < self.refuse:
            return False
        if draw < self.refuse + self.unanswered:
            return None
        return True

    @asynccontextmanager
    async def serving(self, coordinator: Coordinator) -> AsyncIterator[None]:
        """Answer the requests made while the ``with`` block runs, through ``coordinator``."""
        answering: set[asyncio.Task[None]] = set()

        async def serve() -> None:
            while True:
                gid = await self._asked.get()
                task = asyncio.create_task(self._reply(coordinator, gid))
                answering.add(task)
                task.add_done_callback(answering.discard)

        server = asyncio.create_task(serve())
        try:
            yield
        finally:
            for task in (server, *answering):
                task.cancel()
            await asyncio.gather(server, *answering, return_exceptions=True)

    async def _reply(self, coordinator: Coordinator, gid: str) -> None:
        decision = self.answer(gid)
        if decision is None:
            self.tally[UNANSWERED] += 1
            return
        shortest, longest = THINKING
        await asyncio.sleep(shortest + (longest - shortest) * self.draw("thinking", gid))
        try:
            # the id makes the answer idempotent: sent twice, it is kept once
            await coordinator.signal(gid, APPROVAL, decision, id="approver", by="approver")
        except IllegalStateChange:
            return  # the trip ended meanwhile (rolled back by an operator, say)
        self.tally[APPROVED if decision else REFUSED] += 1
