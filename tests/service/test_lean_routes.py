"""The endpoints served by a plain route in front of FastAPI's (``server._lean``) answer
exactly as FastAPI's own routes do: the same status, body and headers for good and bad
requests alike, and the OpenAPI document still lists them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Route

from legato import Coordinator
from legato.server import create_app
from legato.settings import Settings
from tests.support.scripted_participant import Participant

LEAN_PATHS = {
    "/v1/sagas",
    "/api/dtmsvr/prepare",
    "/api/dtmsvr/submit",
    "/api/dtmsvr/registerBranch",
    "/api/dtmsvr/registerTccBranch",
    "/api/dtmsvr/registerXaBranch",
    "/api/dtmsvr/abort",
}
TOKEN = "s3cret-token-for-the-lean-test"
HEADERS = ("content-type", "www-authenticate", "retry-after", "allow")


def _lean(route: object) -> bool:
    return type(route) is Route and getattr(route, "path", None) in LEAN_PATHS


def _requests(url: str) -> list[tuple[str, Any, dict[str, str]]]:
    """(path, body: bytes as sent / anything else as JSON, headers)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    step = {"name": "flight", "action": f"{url}/a", "compensate": f"{url}/c", "payload": {"n": 1}}
    saga: list[Any] = [
        b"",
        b"null",
        b"[]",
        {},
        {"steps": []},
        {"steps": [{**step, "action": "ftp://x/a"}]},
        {"steps": [{**step, "action": f"{url}/a b"}]},
        {"steps": [step], "colour": "blue"},
        {"steps": [{**step, "retry": {"max_attempts": 0}}]},
        {"steps": [{**step, "retry": {"backoff": 1e300 * 10}}]},
        {"gid": "a b", "steps": [step]},
        {"gid": "x" * 500, "steps": [step]},
        {"steps": [step], "headers": {"X-A": "1\r\n2"}},
        {"steps": [step], "headers": {"X-A": TOKEN}},
        {"steps": [step], "wait_timeout": -1},
        {"steps": [step] * 201},
        {"steps": [step, step]},
        {"steps": [{**step, "payload": "x" * 300_000}]},
        {"gid": "lean-saga", "steps": [step], "wait": True},
        {"gid": "lean-saga", "steps": [step], "wait": True},
        {"gid": "lean-saga", "steps": [{**step, "payload": {"n": 2}}]},
    ]
    dtm: list[tuple[str, Any]] = [
        ("submit", b""),
        ("submit", b"[]"),
        ("submit", {"trans_type": "saga"}),
        ("submit", {"gid": "d1", "trans_type": "nope"}),
        ("submit", {"gid": "d1", "trans_type": "saga", "steps": [{"action": "ftp://x"}]}),
        (
            "submit",
            {
                "gid": "d1",
                "trans_type": "saga",
                "steps": [{"action": f"{url}/a", "compensate": f"{url}/c"}],
                "payloads": ['{"n":1}'],
                "wait_result": True,
            },
        ),
        ("prepare", {"gid": "t1", "trans_type": "tcc"}),
        ("prepare", {"gid": "t1", "trans_type": "bogus"}),
        ("registerBranch", {"gid": "t1", "branch_id": "01", "trans_type": "tcc"}),
        (
            "registerBranch",
            {
                "gid": "t1",
                "branch_id": "01",
                "trans_type": "tcc",
                "confirm": f"{url}/a",
                "cancel": f"{url}/c",
                "data": "{}",
            },
        ),
        (
            "registerTccBranch",
            {
                "gid": "t1",
                "branch_id": "02",
                "trans_type": "tcc",
                "confirm": f"{url}/a",
                "cancel": f"{url}/c",
            },
        ),
        ("prepare", {"gid": "x1", "trans_type": "xa"}),
        ("registerXaBranch", {"gid": "x1", "branch_id": "01", "trans_type": "xa"}),
        ("registerXaBranch", {"gid": "x1", "branch_id": "01", "trans_type": "xa", "url": url}),
        ("abort", {"gid": "x1", "trans_type": "xa"}),
        ("abort", {"gid": "t1", "trans_type": "tcc", "wait_result": True}),
        ("abort", {"gid": "nobody", "trans_type": "tcc"}),
        ("abort", {"gid": "t1", "trans_type": "saga"}),
    ]
    out = [("/v1/sagas", body, auth) for body in saga]
    out += [(f"/api/dtmsvr/{path}", body, auth) for path, body in dtm]
    # without the token, and with a wrong one
    out += [("/v1/sagas", {"steps": [step]}, {}), ("/api/dtmsvr/submit", {"gid": "x"}, {})]
    out += [("/v1/sagas", {"steps": [step]}, {"Authorization": "Bearer wrong"})]
    return out


async def _answers(app: FastAPI, requests: list[tuple[str, Any, dict[str, str]]]) -> list[Any]:
    transport = httpx.ASGITransport(app=app)
    answers = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for path, body, headers in requests:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent = {**headers, "Content-Type": "application/json"} if raw else headers
            r = await client.post(path, content=raw, headers=sent)
            kept = {k: r.headers.get(k) for k in HEADERS}
            answers.append((path, r.status_code, r.json(), kept))
        for path in sorted(LEAN_PATHS):  # another method
            r = await client.get(path)
            answers.append((path, r.status_code, r.json(), {k: r.headers.get(k) for k in HEADERS}))
    return answers


@pytest.fixture
async def apps(tmp_path: Any) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """Two services alike on logs of their own: one as served, one with FastAPI's routes
    alone."""
    settings = Settings.from_env(api_token=TOKEN, max_payload_bytes=256 * 1024)
    lean = Coordinator(f"sqlite:///{tmp_path / 'lean.db'}")
    plain = Coordinator(f"sqlite:///{tmp_path / 'plain.db'}")
    served, fastapi_only = create_app(lean, settings=settings), create_app(plain, settings=settings)
    # first in line, so that they, not FastAPI's, serve these paths
    assert all(map(_lean, served.router.routes[: len(LEAN_PATHS)]))
    fastapi_only.router.routes[:] = [r for r in fastapi_only.router.routes if not _lean(r)]
    async with lean, plain:
        yield served, fastapi_only


async def test_the_lean_routes_answer_as_fastapis_own(
    apps: tuple[FastAPI, FastAPI], participant: Participant
) -> None:
    served, fastapi_only = apps
    requests = _requests(participant.url)
    got, wanted = await _answers(served, requests), await _answers(fastapi_only, requests)
    for g, w in zip(got, wanted, strict=True):
        assert g == w
    # the corpus reaches every kind of answer: good, refused by the model, by the rules
    assert {status for _, status, _, _ in wanted} >= {200, 400, 401, 405, 409, 422}


def test_the_openapi_document_still_lists_the_lean_endpoints(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    served, fastapi_only = apps
    assert served.openapi() == fastapi_only.openapi()
    paths = served.openapi()["paths"]
    assert "post" in paths["/v1/sagas"] and "post" in paths["/api/dtmsvr/submit"]
