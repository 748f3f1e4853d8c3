"""``legato dashboard --log``: the dashboard alone, over a log another process drives."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.dashboard import (
    READER,
    SOLD_OUT,
    TOKEN,
    Process,
    saga,
    start,
    submit,
    transaction,
    wait_stuck,
)
from tests.support.scripted_participant import Participant


def test_a_retry_pressed_on_the_lone_dashboard_is_carried_out_by_the_coordinator(
    serve: Process, log_url: str, participant: Participant
) -> None:
    body = saga(participant, "alone-1", car=[SOLD_OUT], hotel_cancel=[(500, "down")])
    submit(serve.url, body)
    wait_stuck(serve.url, "alone-1")
    dashboard = start(["dashboard", "--log", log_url], "/login", {"LEGATO_API_TOKEN": TOKEN})
    try:
        assert httpx.get(dashboard.url + "/?stuck=1").status_code == 303  # log in first
        assert "alone-1" in httpx.get(dashboard.url + "/?stuck=1", headers=READER).text
        assert httpx.get(dashboard.url + "/summary.json", headers=READER).json()["stuck"] == 1
        assert httpx.post(dashboard.url + "/tx/alone-1/retry").status_code == 401
        assert transaction(serve.url, "alone-1")["requested"] is None
        participant.script("/alone-1/hotel/cancel", [(200, {})])
        r = httpx.post(
            dashboard.url + "/tx/alone-1/retry", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 303
        deadline = time.monotonic() + 20
        while (tx := transaction(serve.url, "alone-1"))["status"] != "failed":
            assert time.monotonic() < deadline, tx
            time.sleep(0.1)
        asked = [e["detail"] for e in tx["events"] if e["kind"] == "requested"]
        assert asked == [{"what": "retry", "by": "dashboard"}]
        page = httpx.get(dashboard.url + "/tx/alone-1", headers=READER).text
        assert "retry requested by dashboard" in page
        # the lone dashboard has no API of its own
        assert httpx.get(dashboard.url + "/openapi.json").status_code == 404
    finally:
        dashboard.stop()


def test_the_lone_dashboard_refuses_a_log_that_is_not_there(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    run = subprocess.run(
        [sys.executable, "-m", "legato.cli", "dashboard", "--log", missing, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "there is no log" in run.stderr
    assert not (tmp_path / "nothing.db").exists()
