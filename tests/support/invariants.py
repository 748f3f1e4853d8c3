"""What every chaos run checks in the log, beside the participants' own databases.

``ops_left_running``: no op is in ``running`` past its attempt's deadline (the time
its attempt started, which the log keeps as the op's ``updated_at``, plus the
attempt's timeout) and a grace. An attempt always ends (DESIGN section 10): with an
outcome, a timeout, or an exception recorded as its unknown outcome; an op still
running long after that was left behind, and no one would ever retry it.

    assert await ops_left_running(log_url) == []

Call it once the run has settled with a coordinator alive: right after a kill -9,
the dead coordinator's ops are running in the log until a live one resumes them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import legato
from legato import OpStatus, TxQuery
from legato._model import OpRecord, TxRecord
from legato.transports.http import DEFAULT_REQUEST_TIMEOUT

GRACE = 5.0
PAGE = 500


async def ops_left_running(
    log_url: str, *, timeout: float = DEFAULT_REQUEST_TIMEOUT, grace: float = GRACE
) -> list[str]:
    """Each op the log holds as running past its deadline plus ``grace``, described.

    ``timeout`` is the longest any attempt of the run may take where its op names no
    timeout of its own (an HTTP call's, in its payload or its wire saga's spec)."""
    now = time.time()
    found: list[str] = []
    log = legato.open_log(log_url)
    await log.open()
    try:
        offset = 0
        while page := await log.list(TxQuery(limit=PAGE, offset=offset)):
            for tx in page:
                loaded = await log.load(tx.gid)
                for op in loaded[1] if loaded else ():
                    if op.status is not OpStatus.RUNNING:
                        continue
                    deadline = op.updated_at + max(timeout, _own_timeout(tx, op))
                    if now > deadline + grace:
                        found.append(
                            f"{tx.gid} {op.branch}.{op.op} ({tx.status}): running since "
                            f"attempt {op.attempts} began {now - op.updated_at:.1f}s ago"
                        )
            offset += PAGE
    finally:
        await log.close()
    return found


def _own_timeout(tx: TxRecord, op: OpRecord) -> float:
    call: Any = op.payload
    if not isinstance(call, Mapping):  # a wire saga's op: its call is in the spec
        spec = tx.options.get("spec")
        steps = spec.get("steps", []) if isinstance(spec, Mapping) else []
        step = next((s for s in steps if s.get("name") == op.branch), {})
        call = step.get(str(op.op))
    own = call.get("timeout") if isinstance(call, Mapping) else None
    return float(own) if isinstance(own, int | float) else 0.0
