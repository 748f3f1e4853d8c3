"""Choosing a log adapter by URL: what a serving process and a reading command ask of it."""

from __future__ import annotations

from pathlib import Path

from legato.log import log_exists, open_log
from legato.log.memory import MemoryLog
from legato.log.sqlite import SqliteLog


def test_a_sqlite_log_commits_on_the_loop_unless_the_loop_also_serves_http(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    alone, serving = open_log(url), open_log(url, serving=True)

    assert isinstance(alone, SqliteLog) and alone.inline_commits
    assert isinstance(serving, SqliteLog) and not serving.inline_commits


def test_a_memory_log_is_the_same_whether_or_not_it_serves() -> None:
    assert isinstance(open_log("memory://", serving=True), MemoryLog)


def test_a_sqlite_log_exists_once_its_file_does_and_asking_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"

    assert not log_exists(f"sqlite:///{path}")
    assert not path.exists()
    path.touch()
    assert log_exists(f"sqlite:///{path}")


def test_a_memory_or_server_log_is_taken_to_be_there() -> None:
    assert log_exists("memory://")
    assert log_exists("postgresql://nobody@127.0.0.1:1/none")
