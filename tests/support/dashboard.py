"""What the dashboard's tests share: a ``legato`` command serving HTTP (``legato serve``,
whose dashboard is at ``/``, or ``legato dashboard --log``), and sagas over the
scripted participant submitted through the native API, then read back from the log.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import start_legato, stop_legato
from tests.support.scripted_participant import Participant

TOKEN = "dash-s3cret"
FAST = {"max_attempts": 2, "backoff": 0.05, "jitter": 0}
SOLD_OUT = (409, {"dtm_result": "FAILURE", "message": "sold out"})


@dataclass
class Process:
    """A ``legato`` command serving HTTP on ``url``."""

    url: str
    process: subprocess.Popen[bytes]
    output: Path

    def stop(self) -> None:
        stop_legato(self.process, self.output)


def start(command: list[str], ready: str, env: dict[str, str] | None = None) -> Process:
    """Run ``legato <command> --port P`` and wait until ``ready`` (a path) answers 200."""
    full_env = {**os.environ, **(env or {})}
    if env is None or "LEGATO_API_TOKEN" not in env:
        full_env.pop("LEGATO_API_TOKEN", None)
    return Process(*start_legato(command, env=full_env, ready=ready))


def saga(
    p: Participant,
    gid: str,
    *,
    car: list[Any] | None = None,
    hotel_cancel: list[Any] | None = None,
    payload: Any = None,
    wait: bool = True,
    key: str | None = None,
) -> dict[str, Any]:
    """A flight, hotel, car saga over the participant, as the native API takes it;
    its URLs are under ``/<key>/`` (the gid by default)."""
    key = key or gid
    steps = []
    for step in ("flight", "hotel", "car"):
        action = car if (step == "car" and car) else [(200, {"booked": step})]
        cancel = hotel_cancel if (step == "hotel" and hotel_cancel) else [(200, {})]
        steps.append(
            {
                "name": step,
                "action": p.script(f"/{key}/{step}", action),
                "compensate": p.script(f"/{key}/{step}/cancel", cancel),
                "payload": payload if payload is not None else {"trip": gid},
                "retry": FAST,
                "compensate_retry": FAST,
            }
        )
    return {"gid": gid, "steps": steps, "wait": wait, "wait_timeout": 20}


def submit(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(url + "/v1/sagas", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


READER = {"Authorization": f"Bearer {TOKEN}"}
"""Read with the token: a guarded server needs it to show a transaction, an open one
does not look at it."""


def transaction(url: str, gid: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/transactions/{gid}", timeout=10, headers=READER)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_stuck(url: str, gid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        tx = transaction(url, gid)
        if tx["stuck"]:
            return tx
        assert time.monotonic() < deadline, f"{gid} never became stuck: {tx}"
        time.sleep(0.05)
