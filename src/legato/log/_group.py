"""Group commit: concurrent transactions' log writes share one database commit.

Writers enqueue jobs and await them. One flusher takes every job waiting, runs
them in a single database transaction and commits once, then answers each
writer. While a commit (and its fsync) is in progress new jobs pile up, so the
batch grows with the load and a lone writer waits for no one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
Job = Callable[[C], Any]
"""Runs inside the batch's transaction; may raise ``LeaseLost`` without doing any write."""

Outcome = tuple[bool, Any]  # (ok, result or exception)


class GroupCommit(Generic[C]):
    def __init__(
        self, run_batch: Callable[[list[Job[C]]], Awaitable[list[Outcome]]], max_batch: int = 512
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: list[tuple[Job[C], asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="legato-group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for _, fut in self._queue:
            if not fut.done():
                fut.cancel()
        self._queue.clear()

    async def submit(self, job: Job[C]) -> Any:
        if self._task is None:
            raise RuntimeError("the log is not open")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((job, fut))
        self._wakeup.set()
        return await fut

    async def _flusher(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    outcomes = await self._run_batch([job for job, _ in batch])
                except asyncio.CancelledError:
                    for _, fut in batch:
                        fut.cancel()
                    raise
                except BaseException as exc:  # the whole commit failed: every writer hears it
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.batches += 1
                self.jobs += len(batch)
                for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
