"""``/health/live`` and ``/health/ready``: open without the token, ready only while the
log answers with the schema this Legato builds and no stop has begun."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from legato import Coordinator
from legato.server import create_app
from legato.settings import Settings


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[Coordinator, httpx.AsyncClient, Path]]:
    db = tmp_path / "log.db"
    c = Coordinator(f"sqlite:///{db}", owner="probed")
    app = create_app(c, settings=Settings(api_token="s3cret"))
    await c.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probed") as client:
        yield c, client, db
    await c.stop()


async def test_live_and_ready_answer_without_the_token(
    started: tuple[Coordinator, httpx.AsyncClient, Path],
) -> None:
    _, client, _ = started
    live = await client.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["owner"] == "probed"
    assert isinstance(body["schema"], int) and body["schema"] > 0
    assert (await client.get("/v1/transactions")).status_code == 401  # the rest is guarded
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/health", "/health/live", "/health/ready"} <= set(paths)


async def test_ready_turns_503_the_moment_a_stop_begins_and_live_stays_200(
    started: tuple[Coordinator, httpx.AsyncClient, Path],
) -> None:
    c, client, _ = started
    c.begin_stop(5)
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["failed"] == "stopping"
    assert "stopping" in ready.json()["why"]
    assert (await client.get("/health/live")).status_code == 200
    submit = await client.post(
        "/v1/sagas",
        json={"steps": [{"action": "http://127.0.0.1:9/x"}]},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert submit.status_code == 503 and submit.headers["Retry-After"] == "0"
    assert "stopping" in submit.json()["detail"]


async def test_ready_says_the_schema_differs_once_a_newer_legato_migrated_the_log(
    started: tuple[Coordinator, httpx.AsyncClient, Path],
) -> None:
    _, client, db = started
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO legato_migrations (version, name, applied_at) VALUES (999, 'x', 0)"
        )
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["failed"] == "schema"
    assert "version 999" in ready.json()["why"] and "upgrade Legato" in ready.json()["why"]
    assert (await client.get("/health/live")).status_code == 200


async def test_ready_is_503_naming_the_log_when_it_does_not_answer(
    started: tuple[Coordinator, httpx.AsyncClient, Path],
) -> None:
    _, client, db = started
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE legato_migrations")
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["failed"] == "log"
    assert (await client.get("/health/live")).status_code == 200
