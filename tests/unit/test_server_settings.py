"""The check that the suite leaves the shared servers as it found them: its comparer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import server_settings as ss
from tests.support.server_settings import ABSENT, START, STARTED, compare, report, snapshot


def _pg(start: float = 1000.0, **settings: str) -> dict[str, str]:
    return {"setting work_mem": "4096", "setting max_connections": "100", START: str(start),
            **{f"setting {k}": v for k, v in settings.items()}}  # fmt: skip


def test_the_same_settings_and_start_time_are_no_change() -> None:
    before = {"postgresql": _pg(), "redis": {"run_id": "abc", START: "50.0"}}
    assert compare(before, json.loads(json.dumps(before))) == []
    ok, line = report(before, before)
    assert ok and line == "shared servers unchanged: postgresql, redis"


def test_a_changed_setting_is_named_with_both_values() -> None:
    changes = compare({"postgresql": _pg()}, {"postgresql": _pg(work_mem="65536")})
    assert changes == ["postgresql: setting work_mem was 4096, now 65536"]


def test_a_setting_that_appears_or_goes_is_named() -> None:
    after = {"postgresql": {**_pg(), "file /etc/auto.conf:3 fsync": "off (applied: f)"}}
    assert compare({"postgresql": _pg()}, after) == [
        "postgresql: file /etc/auto.conf:3 fsync was (none), now off (applied: f)"
    ]
    assert compare(after, {"postgresql": _pg()}) == [
        "postgresql: file /etc/auto.conf:3 fsync was off (applied: f), now (none)"
    ]


def test_a_start_time_that_moves_a_little_is_not_a_restart_but_a_new_one_is() -> None:
    # a start time derived from an uptime in whole seconds jitters by a second or two
    assert compare({"mariadb": _pg(1000.0)}, {"mariadb": _pg(1000.0 + 1.7)}) == []
    (change,) = compare({"mariadb": _pg(1000.0)}, {"mariadb": _pg(1000.0 + 600)})
    assert change.startswith("mariadb: restarted (started again at ")


def test_an_exact_start_time_that_differs_at_all_is_a_restart() -> None:
    at = "2026-12-05 15:23:01.123456+00"
    assert compare({"postgresql": {STARTED: at}}, {"postgresql": {STARTED: at}}) == []
    later = "2026-12-05 15:23:01.923456+00"  # within a second, but another start
    assert compare({"postgresql": {STARTED: at}}, {"postgresql": {STARTED: later}}) == [
        f"postgresql: restarted (started again at {later})"
    ]


def test_a_restart_and_a_changed_setting_are_both_reported() -> None:
    changes = compare(
        {"postgresql": _pg(), "redis": {"run_id": "a"}},
        {"postgresql": _pg(5000.0, max_connections="200"), "redis": {"run_id": "b"}},
    )
    assert changes[0] == "postgresql: setting max_connections was 100, now 200"
    assert changes[1].startswith("postgresql: restarted")
    assert changes[2] == "redis: run_id was a, now b"
    ok, text = report({"redis": {"run_id": "a"}}, {"redis": {"run_id": "b"}})
    assert not ok and text.startswith("shared servers CHANGED by the tests:")


def test_a_server_absent_both_times_is_no_change_but_one_that_went_away_is() -> None:
    gone = {ABSENT: "connection refused"}
    assert compare({"nats": gone}, {"nats": gone}) == []
    ok, line = report(
        {"nats": gone, "redis": {"run_id": "a"}}, {"nats": gone, "redis": {"run_id": "a"}}
    )
    assert ok and line == "shared servers unchanged: redis (not reachable, not checked: nats)"
    assert compare({"nats": {"info server_id": "N1"}}, {"nats": gone}) == [
        "nats: was up before the tests, absent (connection refused) after"
    ]


def test_long_values_are_shortened_in_the_report() -> None:
    (change,) = compare({"redis": {"config save": "x" * 200}}, {"redis": {"config save": ""}})
    assert change.startswith("redis: config save was xxx") and "..., now " in change
    assert len(change) < 140


def test_a_reader_that_raises_records_the_server_as_absent() -> None:
    def broken() -> dict[str, str]:
        raise OSError("Connection refused\nmore detail")

    taken = snapshot({"redis": broken, "nats": lambda: {"info server_id": "N1"}})
    assert taken == {"redis": {ABSENT: "Connection refused"}, "nats": {"info server_id": "N1"}}


def test_the_command_line_snapshots_then_compares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {"info server_id": "N1", "info max_payload": "1048576"}
    monkeypatch.setattr(ss, "READERS", {"nats": lambda: dict(settings)})
    path = tmp_path / "before.json"
    assert ss.main(["snapshot", str(path)]) == 0
    assert ss.main(["compare", str(path)]) == 0
    assert capsys.readouterr().out == "shared servers unchanged: nats\n"
    settings["info server_id"] = "N2"  # NATS started again
    assert ss.main(["compare", str(path)]) == 1
    assert "nats: info server_id was N1, now N2" in capsys.readouterr().out
    assert ss.main(["bogus"]) == 2


def test_a_process_start_is_read_exactly_and_stays_put() -> None:
    import os

    first = ss._process_start(os.getpid())
    assert first is not None and first.startswith(f"process {os.getpid()}, ")
    assert ss._process_start(str(os.getpid())) == first  # rabbitmqctl gives the pid as text
    assert ss._process_start(None) is None and ss._process_start(2**40) is None
