"""Workflows left in a log for the read paths to show (``legato tx``, the dashboard):
one that waited for a signal and went on, one that waited and rolled back, each sent
a second signal it never takes; and workflows whose version no coordinator runs.

The steps and their compensations are module-level: a compensation is journaled by its
import path."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import legato
from legato import Coordinator, Failure


def reserve(what: str) -> str:
    if what == "full":
        raise Failure(f"{what}: sold out")
    return f"{what} booked"


def cancel(what: str) -> None:
    pass


@legato.workflow("approved_trip")
async def approved_trip(wf: legato.Workflow, hotel: str) -> str:
    await wf.step(reserve, "flight", compensate=cancel)
    approved = await wf.wait_for("approval", timeout=30)  # long enough to be let go
    await wf.sleep(0.05)
    if not approved:
        raise Failure("not approved")
    return str(await wf.step(reserve, hotel, compensate=cancel))


WAITED = {"wf-ok": "inn", "wf-undone": "full"}
"""The gids ``waited`` leaves, and the hotel each books (``full`` is sold out)."""


async def waited(log_url: str) -> None:
    """Run ``approved_trip`` once per ``WAITED``: each let go while it waits for its
    approval, signalled ("boss", taken), then signalled again ("late", never taken)."""
    async with Coordinator(log_url, poll_interval=0.05) as c:
        for gid, hotel in WAITED.items():
            h = await c.start_workflow(approved_trip, hotel, gid=gid)
            for _ in range(100):
                if (await c.get(gid))[0].lease_owner is None:
                    break
                await asyncio.sleep(0.05)
            await c.signal(gid, "approval", True, id="boss")
            await c.signal(gid, "approval", False, id="late")
            await h.result(timeout=10)


async def left_behind(log_url: str, gids: Sequence[str]) -> None:
    """Start workflow ``left@1`` (an hour's sleep) as ``gids``, on a coordinator that then
    stops: due again once aged (``records.make_overdue``), and no coordinator has it."""

    @legato.workflow("left", version="1")
    async def left(wf: legato.Workflow) -> None:
        await wf.sleep(3600)

    async with Coordinator(log_url, poll_interval=0.05, owner="old") as c:
        for gid in gids:
            await c.start_workflow(left, gid=gid)
