"""Group commit's queue, on a fake database: with two flushers, a job that must run alone
(a claim, a renewal) goes ahead of the writes waiting, in a batch of its own."""

from __future__ import annotations

import asyncio
from typing import Any

from legato.log._group import GroupCommit, JobResult


def writes_only(jobs: list[Any]) -> bool:
    return all(str(j).startswith("write") for j in jobs)


async def test_a_claim_goes_ahead_of_the_writes_waiting_and_runs_in_a_batch_of_its_own() -> None:
    batches: list[list[str]] = []
    started = asyncio.Condition()
    release = asyncio.Event()

    async def run_batch(jobs: list[Any]) -> list[JobResult]:
        batches.append(list(jobs))
        async with started:
            started.notify_all()
        if len(batches) <= 2:  # both flushers held until the queue below has built up
            await release.wait()
        return [(True, job) for job in jobs]

    group: GroupCommit[Any] = GroupCommit(run_batch, flushers=2, shared=writes_only)
    group.start()
    try:
        first = []
        for i in range(2):  # one each: both flushers busy
            first.append(asyncio.ensure_future(group.submit(f"write {i}")))
            async with started:
                await started.wait_for(lambda i=i: len(batches) > i)
        waiting = [asyncio.ensure_future(group.submit(f"write {i}")) for i in range(2, 10)]
        claim = asyncio.ensure_future(group.submit("claim"))
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*first, *waiting, claim)
    finally:
        await group.stop()

    assert results[-1] == "claim"  # every job answered with its own outcome
    assert batches[2] == ["claim"]
    assert batches[3] == [f"write {i}" for i in range(2, 10)]
    assert len(batches) == 4


async def test_with_one_flusher_a_claim_shares_the_batch_of_the_writes_waiting() -> None:
    """SQLite's one writer: a batch is one commit, whatever it holds."""
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def run_batch(jobs: list[Any]) -> list[JobResult]:
        batches.append(list(jobs))
        if len(batches) == 1:
            await release.wait()
        return [(True, job) for job in jobs]

    group: GroupCommit[Any] = GroupCommit(run_batch, flushers=1, shared=writes_only)
    group.start()
    try:
        first = asyncio.ensure_future(group.submit("write 0"))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(group.submit(j)) for j in ("write 1", "claim", "write 2")]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, *rest)
    finally:
        await group.stop()

    assert batches == [["write 0"], ["write 1", "claim", "write 2"]]
