"""The chaos tests' fixtures: the log and the services' databases a worker runs on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import new_pg_database
from tests.support.travel import STEPS, Setup, create_tables


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """The log and the three services' databases, all SQLite files or all PostgreSQL."""
    if request.param == "sqlite":
        locations = {step: str(tmp_path / f"{step}.db") for step in STEPS}
        create_tables(locations)
        yield Setup(f"sqlite:///{tmp_path / 'log.db'}", locations)
        return
    log_url = request.getfixturevalue("pg_database")  # skips (or fails under CI) without PG
    with contextlib.ExitStack() as stack:
        locations = {step: stack.enter_context(new_pg_database("legato_svc")) for step in STEPS}
        create_tables(locations)
        yield Setup(log_url, locations)
