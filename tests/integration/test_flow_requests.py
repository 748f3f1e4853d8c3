"""An operator's requests on a choreographed flow, which no coordinator drives: a
force-end ends it at once (from the coordinator, the CLI and the dashboard's log desk),
retry and abort are refused naming why, and nothing is left waiting in the log."""

from __future__ import annotations

import asyncio

import pytest

from legato import Coordinator
from legato._errors import IllegalStateChange
from legato._model import TxStatus
from legato.cli import main
from legato.dashboard._desk import LogDesk
from legato.flow import FlowRecorder
from legato.log import open_log


async def _two_open_flows(log_url: str) -> None:
    log = open_log(log_url)
    await log.open()
    try:
        recorder = FlowRecorder(log)
        for gid in ("order-1", "order-2", "order-3"):
            await recorder.hop(gid, "orders", "order.placed")
            await recorder.hop(gid, "payments", "payment.taken")
    finally:
        await log.close()


async def _state(log_url: str, gid: str) -> tuple[str, str | None, list[str]]:
    log = open_log(log_url)
    await log.open()
    try:
        loaded = await log.load(gid)
        assert loaded is not None
        tx = loaded[0]
        kinds = [e.kind for e in await log.events(gid)]
        return tx.status, tx.requested, kinds
    finally:
        await log.close()


async def test_the_coordinator_force_ends_a_flow_and_refuses_to_retry_or_abort_it(
    log_url: str,
) -> None:
    await _two_open_flows(log_url)
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1) as c:
        for ask in (c.retry, c.abort):
            with pytest.raises(IllegalStateChange, match="choreographed flow"):
                await ask("order-1", by="test")
        await c.force_end("order-1", "failed", by="test")
        with pytest.raises(IllegalStateChange, match="already ended"):
            await c.force_end("order-1", "succeeded", by="test")
    status, requested, kinds = await _state(log_url, "order-1")
    assert (status, requested) == (TxStatus.FAILED, None)
    assert kinds[-3:] == ["requested", "force_end", "status"]


def test_the_cli_force_ends_a_flow_at_once_and_refuses_a_retry(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_two_open_flows(log_url))
    assert main(["tx", "retry", "order-2", "--log", log_url]) == 1
    assert "choreographed flow" in capsys.readouterr().err
    assert main(["tx", "force-end", "order-2", "--status", "succeeded", "--log", log_url]) == 0
    assert "ended as succeeded" in capsys.readouterr().out
    status, requested, _ = asyncio.run(_state(log_url, "order-2"))
    assert (status, requested) == (TxStatus.SUCCEEDED, None)


async def test_the_dashboard_s_log_desk_force_ends_a_flow(log_url: str) -> None:
    await _two_open_flows(log_url)
    log = open_log(log_url)
    await log.open()
    try:
        desk = LogDesk(log)
        with pytest.raises(IllegalStateChange, match="choreographed flow"):
            await desk.request("order-3", "abort")
        await desk.request("order-3", "failed")
    finally:
        await log.close()
    status, requested, _ = await _state(log_url, "order-3")
    assert (status, requested) == (TxStatus.FAILED, None)
