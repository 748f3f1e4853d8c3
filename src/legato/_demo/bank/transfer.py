"""The initiator's side of one transfer between ledger services, over DTM's API.

A leg is ``(service URL, account, amount)``: add ``amount`` to that account of
that ledger. :func:`xa_transfer` runs the legs as one XA transaction (prepare,
each service's ``op=action``, then submit, or abort if a leg failed);
:func:`saga_transfer` submits them as a saga whose compensations undo them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import httpx

Leg = tuple[str, int, int]
Outcome = Literal["committed", "refused", "unreachable"]


async def xa_transfer(
    http: httpx.AsyncClient,
    dtm: str,
    gid: str,
    legs: Sequence[Leg],
    *,
    wait: bool = True,
    timeout_to_fail: float = 30,
) -> Outcome:
    """``committed`` (with ``wait``, once every branch is committed; without, once the
    decision is logged), else the transaction was aborted because a leg was
    ``refused`` (409: insufficient funds) or ``unreachable`` (no answer, or not a
    definite one: the service may be down)."""
    base = {"gid": gid, "trans_type": "xa"}
    r = await http.post(f"{dtm}/prepare", json={**base, "timeout_to_fail": timeout_to_fail})
    r.raise_for_status()
    outcome: Outcome = "committed"
    for i, (url, account, amount) in enumerate(legs, start=1):
        q = {**base, "branch_id": f"{i:02d}", "op": "action"}
        body = {"account": account, "amount": amount}
        try:
            status = (await http.post(f"{url}/xa", params=q, json=body)).status_code
        except httpx.HTTPError:  # a service killed mid-call: not known, so abort
            status = 0
        if status != 200:
            outcome = "refused" if status == 409 else "unreachable"
            break
    end = "submit" if outcome == "committed" else "abort"
    (await http.post(f"{dtm}/{end}", json={**base, "wait_result": wait})).raise_for_status()
    return outcome


async def saga_transfer(
    http: httpx.AsyncClient, dtm: str, gid: str, legs: Sequence[Leg], *, wait: bool = True
) -> bool:
    """Whether the saga succeeded (with ``wait``; without, whether it was accepted)."""
    body = {
        "gid": gid,
        "trans_type": "saga",
        "steps": [{"action": f"{u}/saga", "compensate": f"{u}/saga"} for u, _, _ in legs],
        "payloads": [f'{{"account": {a}, "amount": {n}}}' for _, a, n in legs],
        "wait_result": wait,
    }
    r = await http.post(f"{dtm}/submit", json=body)
    if r.status_code == 409:
        return False
    r.raise_for_status()
    return True
