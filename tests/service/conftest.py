"""The service tests' own fixture: ``legato serve`` as a real process. The scripted HTTP
participant (``participant``) is the root conftest's, shared with the dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import Served, start_serve, stop_serve


@pytest.fixture
def server(log_url: str) -> Iterator[Served]:
    """``legato serve`` on the test's log, as a real process."""
    served = start_serve(log_url)
    try:
        yield served
    finally:
        stop_serve(served)
