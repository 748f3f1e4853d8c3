"""The API's pages, /docs (Swagger UI) and /redoc, work with no network: every script,
style sheet and icon they load comes from the server itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from legato.server import create_app

PAGES = ("/docs", "/redoc")
# where a page loads something from: src/href attributes, ReDoc's spec-url, Swagger's url
REFERENCES = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|\burl: '([^']+)'""")


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app("memory://"))
    async with httpx.AsyncClient(transport=transport, base_url="http://legato.test") as client:
        yield client


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCES.findall(html)]


@pytest.mark.parametrize("path", PAGES)
async def test_the_api_page_names_no_address_outside_the_server(
    api: httpx.AsyncClient, path: str
) -> None:
    page = await api.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert re.findall(r"https?://[^\s\"'<>]+", page.text) == []
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in references(page.text))


@pytest.mark.parametrize("path", PAGES)
async def test_every_asset_the_api_page_loads_answers_from_the_server(
    api: httpx.AsyncClient, path: str
) -> None:
    page = await api.get(path)
    refs = references(page.text)
    assert "/openapi.json" in refs
    assert any(ref.endswith(".js") for ref in refs)
    for ref in refs:
        answer = await api.get(ref)
        assert answer.status_code == 200, ref
        assert answer.content, ref
