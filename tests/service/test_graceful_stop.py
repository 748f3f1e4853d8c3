"""``legato serve`` on SIGTERM, as a real process: the waits are answered at once (not
settled, so the client asks another coordinator), the op in flight finishes and is
written, nothing more starts, the leases are released, and it exits 0; a second
signal, or the grace running out, stops it at once."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx

from legato.log import open_log
from tests.support.processes import Served, start_serve, stop_serve
from tests.support.scripted_participant import Participant

FAST = {"max_attempts": 3, "backoff": 0.05, "jitter": 0}


def two_steps(p: Participant, gid: str, seconds: float) -> dict[str, Any]:
    """A saga whose first step answers after ``seconds``, the second at once."""
    return {
        "gid": gid,
        "steps": [
            {"name": "slow", "action": p.script(f"/slow/{gid}", [(200, {}, seconds)]),
             "retry": FAST},
            {"name": "fast", "action": p.script(f"/fast/{gid}", [(200, {})]), "retry": FAST},
        ],
    }  # fmt: skip


def dtm_saga(p: Participant, gid: str, seconds: float) -> dict[str, Any]:
    return {
        "gid": gid,
        "trans_type": "saga",
        "steps": [
            {"action": p.script(f"/slow/{gid}", [(200, {}, seconds)]), "compensate": ""},
            {"action": p.script(f"/fast/{gid}", [(200, {})]), "compensate": ""},
        ],
        "payloads": ["{}", "{}"],
        "wait_result": True,
    }


async def _started(p: Participant, path: str) -> None:
    while not p.calls_to(path):
        await asyncio.sleep(0.01)


def _exited(served: Served, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while served.process.poll() is None:
        assert time.monotonic() < deadline, served.lines()[-3000:]
        time.sleep(0.02)
    return served.process.returncode


async def _read(log: str, gid: str) -> tuple[Any, dict[str, Any]]:
    reader = open_log(log)
    await reader.open()
    try:
        loaded = await reader.load(gid)
    finally:
        await reader.close()
    assert loaded is not None
    tx, ops = loaded
    return tx, {o.branch: o for o in ops}


async def test_sigterm_answers_the_waits_lets_the_op_finish_releases_and_exits_0(
    log_url: str, participant: Participant
) -> None:
    served = start_serve(log_url, env={"LEGATO_GRACE": "8"})
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            native = two_steps(participant, "stop-1", 1.5) | {"wait": True, "wait_timeout": 25}
            waiting = asyncio.ensure_future(client.post(served.url + "/v1/sagas", json=native))
            dtm = asyncio.ensure_future(
                client.post(served.dtm + "/submit", json=dtm_saga(participant, "stop-2", 1.5))
            )
            await _started(participant, "/slow/stop-1")
            await _started(participant, "/slow/stop-2")
            ready = await client.get(served.url + "/health/ready")
            assert ready.status_code == 200
            signalled = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            answer, dtm_answer = await asyncio.gather(waiting, dtm)
            answered = time.monotonic() - signalled
            # the ops still run: the listener stays open, saying "not ready" to a load
            # balancer, and refusing new work with a 503 that names the stop
            ready = await client.get(served.url + "/health/ready")
            late = await client.post(
                served.url + "/v1/sagas", json=two_steps(participant, "stop-3", 0.1)
            )
        code = await asyncio.to_thread(_exited, served, 8)
        took = time.monotonic() - signalled
    finally:
        stop_serve(served)
    assert answered < 1.0, answered  # at once, not when the op (1.5 s) or wait (25 s) ends
    assert ready.status_code == 503 and ready.json()["failed"] == "stopping", ready.text
    assert late.status_code == 503 and late.headers["retry-after"] == "0", late.text
    assert answer.status_code == 200
    assert answer.json()["settled"] is False and answer.json()["status"] == "submitted"
    assert dtm_answer.status_code == 425 and dtm_answer.json()["dtm_result"] == "ONGOING"
    assert "FAILURE" not in dtm_answer.text
    assert code == 0
    assert 1.0 < took < 8  # the ops in flight were waited for, not the grace
    for gid in ("stop-1", "stop-2"):
        tx, ops = await _read(log_url, gid)
        assert tx.lease_owner is None  # released: another coordinator takes it at once
        native = gid == "stop-1"
        slow, fast = ops["slow" if native else "01"], ops["fast" if native else "02"]
        assert str(slow.status) == "succeeded" and slow.attempts == 1  # finished, written
        assert str(fast.status) == "pending" and fast.attempts == 0  # never started
    assert not participant.calls_to("/fast/stop-1") and not participant.calls_to("/fast/stop-2")


async def test_a_second_sigterm_stops_at_once_leaving_the_op_to_the_next_owner(
    log_url: str, participant: Participant
) -> None:
    served = start_serve(log_url, env={"LEGATO_GRACE": "30"})
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(
                served.url + "/v1/sagas", json=two_steps(participant, "stop-3", 5)
            )
            assert r.status_code == 200
            await _started(participant, "/slow/stop-3")
        served.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.3)  # past the window in which a repeat is the same stop
        assert served.process.poll() is None  # the grace (30 s) holds it for the op
        again = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(_exited, served, 10)
        took = time.monotonic() - again
    finally:
        stop_serve(served)
    assert code == 0 and took < 3, took
    tx, ops = await _read(log_url, "stop-3")
    assert str(ops["slow"].status) == "running"  # cut mid-call: the next owner retries it
    assert tx.lease_owner is None


async def test_the_grace_running_out_stops_it(log_url: str, participant: Participant) -> None:
    served = start_serve(log_url, env={"LEGATO_GRACE": "1"})
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(
                served.url + "/v1/sagas", json=two_steps(participant, "stop-4", 5)
            )
            assert r.status_code == 200
            await _started(participant, "/slow/stop-4")
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(_exited, served, 10)
        took = time.monotonic() - signalled
    finally:
        stop_serve(served)
    assert code == 0 and 0.9 < took < 4, took
