"""An orchestrator's probes: ``/health/live`` and ``/health/ready``, open like ``/health``.

- ``/health/live``: the process answers (the event loop runs). No log access: a log
  that is away must not get a healthy coordinator restarted, only taken out of the
  load balancer.
- ``/health/ready``: this coordinator should be sent work: the log answers, its schema
  is the one this Legato builds, and no stop has begun. 503 otherwise, the JSON body
  saying why. It turns 503 the moment a stop begins (SIGTERM), before the listener
  closes, so that a load balancer sends the work elsewhere.

``/health`` stays what it was, for people and monitors: the log answers, and the
unfinished transactions by status.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..coordinator import Coordinator

router = APIRouter(tags=["health"])

READY_TIMEOUT = 2.0
"""Seconds the log may take to answer the readiness probe's read (a probe's own timeout,
Kubernetes' default 1 s, is usually set a little above)."""


@router.get("/health/live", summary="Does the process answer? (no log access)")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/health/ready", summary="Should this coordinator be sent work?")
async def ready(request: Request) -> JSONResponse:
    c: Coordinator = request.app.state.coordinator
    if c.stopping:
        return _unready("stopping", "this coordinator is stopping: send work to another one")
    started = time.perf_counter()
    try:
        found, built = await asyncio.wait_for(c.log.schema_versions(), READY_TIMEOUT)
    except TimeoutError:
        return _unready("log", f"the log did not answer within {READY_TIMEOUT:g}s")
    except Exception as exc:  # any failure of the log means not ready
        return _unready("log", f"the log does not answer: {exc}")
    if found != built:
        upgrade = "upgrade Legato" if found > built else "run `legato migrate`"
        why = f"the log's schema is version {found}, this Legato's {built}: {upgrade}"
        return _unready("schema", why)
    if c.stopping:  # began while the log was read
        return _unready("stopping", "this coordinator is stopping: send work to another one")
    return JSONResponse(
        {
            "status": "ready",
            "owner": c.owner,
            "schema": found,
            "log_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    )


def _unready(what: str, why: str) -> JSONResponse:
    return JSONResponse({"status": "unready", "failed": what, "why": why}, status_code=503)
