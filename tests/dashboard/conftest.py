"""The dashboard's fixtures: ``legato serve`` on the test's log, with and without an API
token. The scripted participant (``participant``) is the root conftest's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dashboard import TOKEN, Process, start


@pytest.fixture
def serve(log_url: str) -> Iterator[Process]:
    """``legato serve`` on the test's log, without an API token."""
    p = start(["serve", "--log", log_url], "/health")
    yield p
    p.stop()


@pytest.fixture
def guarded(log_url: str) -> Iterator[Process]:
    """``legato serve`` on the test's log, with ``LEGATO_API_TOKEN`` set."""
    p = start(["serve", "--log", log_url], "/health", {"LEGATO_API_TOKEN": TOKEN})
    yield p
    p.stop()
