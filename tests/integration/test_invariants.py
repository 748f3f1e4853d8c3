"""The chaos runs' check of the log (tests.support.invariants) finds what it is for: an
op left running past its attempt's deadline plus the grace, and nothing else."""

from __future__ import annotations

import time
from pathlib import Path

from legato import OpName, OpStatus, TxStatus, open_log
from legato._model import Json, Mode, OpRecord, TxRecord
from legato.log import NewTransaction
from tests.support.invariants import GRACE, ops_left_running


def running(gid: str, branch: str, began: float, payload: Json = None) -> OpRecord:
    return OpRecord(gid, branch, OpName.ACTION, 0, "POST", OpStatus.RUNNING, 1, 1,
                    updated_at=began, payload=payload)  # fmt: skip


async def test_only_an_op_running_past_its_deadline_and_the_grace_is_reported(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    now = time.time()
    long_ago = now - 10 - GRACE - 5  # past the default 10 s and the grace
    tx = TxRecord("trip-1", Mode.TCC, "wire:tcc", "", TxStatus.SUBMITTED, created_at=now)
    ops = [
        running("trip-1", "left", long_ago),
        running("trip-1", "slow", long_ago, {"url": "http://x/slow", "timeout": 60}),
        running("trip-1", "fresh", now),
        OpRecord("trip-1", "done", OpName.ACTION, 0, "POST", OpStatus.SUCCEEDED, 1, 1,
                 updated_at=long_ago),
    ]  # fmt: skip
    log = open_log(url)
    await log.open()
    try:
        await log.create(NewTransaction(tx, ops))
    finally:
        await log.close()
    (found,) = await ops_left_running(url)
    assert found.startswith("trip-1 left.action (submitted): running since attempt 1 began")
    assert await ops_left_running(url, timeout=60) == []
