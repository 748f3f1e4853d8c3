"""``legato serve`` on a PostgreSQL log whose server restarts or crashes under it
(issue 12, row 14 and item 8).

The log is a database on a PostgreSQL server of the module's own (never the
shared one), which the tests restart, kill and stop while sagas of HTTP steps
are submitted to a real ``legato serve`` process over both APIs. Whatever the
moment, the service answers a success or a 503 with ``Retry-After``, never a
500; a saga it accepted ends within one lease of the server being back; a
submit it refused is safe to repeat; and an idle service's first call after a
restart succeeds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.processes import Served, start_legato, stop_serve
from tests.support.scripted_participant import Participant
from tests.support.servers import PgServer

LEASE = 5.0


@pytest.fixture
def served(throwaway_database: str) -> Iterator[Served]:
    url, process, output = start_legato(
        ["serve", "--log", throwaway_database, "--lease", str(LEASE)]
    )
    served = Served(url, process, throwaway_database, output)
    try:
        yield served
    finally:
        stop_serve(served)


def bounce(pg: PgServer, how: str) -> float:
    """Restart the server (fast shutdown) or crash it (kill -9) and start it again;
    returns when it is back."""
    if how == "restart":
        pg.restart()
    else:
        pg.kill()
        pg.start()
    return time.monotonic()


def saga_body(p: Participant, gid: str, api: str) -> dict[str, Any]:
    flight, hotel = p.url + "/flight", p.url + "/hotel"
    if api == "native":
        steps = [
            {"name": "flight", "action": flight, "compensate": flight + "/cancel"},
            {"name": "hotel", "action": hotel, "compensate": hotel + "/cancel"},
        ]
        return {"gid": gid, "steps": steps}
    return {
        "gid": gid,
        "trans_type": "saga",
        "steps": [
            {"action": flight, "compensate": flight + "/cancel"},
            {"action": hotel, "compensate": hotel + "/cancel"},
        ],
        "payloads": ["{}", "{}"],
    }


def submit(client: httpx.Client, served: Served, p: Participant, gid: str) -> httpx.Response:
    api = "native" if gid.startswith("n-") else "dtm"
    path = "/v1/sagas" if api == "native" else "/api/dtmsvr/submit"
    return client.post(served.url + path, json=saga_body(p, gid, api))


@dataclass
class Load:
    """Sagas submitted without pause by a few clients, half over each API, and every
    answer they got."""

    served: Served
    participant: Participant
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 503 with Retry-After
    wrong: list[str] = field(default_factory=list)  # anything else
    _stop: threading.Event = field(default_factory=threading.Event)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                n = next(self._ids)
                gid = f"{'n' if n % 2 else 'd'}-{n}"
                try:
                    answer = submit(client, self.served, self.participant, gid)
                except httpx.HTTPError as exc:
                    self.wrong.append(f"{gid}: {type(exc).__name__}: {exc}")
                    continue
                if answer.status_code == 200:
                    self.accepted.append(gid)
                elif answer.status_code == 503 and answer.headers.get("retry-after"):
                    self.refused.append(gid)
                else:
                    self.wrong.append(f"{gid}: {answer.status_code} {answer.text[:300]}")

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self.run) for _ in range(3)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def statuses(throwaway_database: str, gids: list[str]) -> dict[str, str]:
    with psycopg.connect(throwaway_database) as conn:
        rows = conn.execute(
            "SELECT gid, status FROM legato_tx WHERE gid = ANY(%s)", (gids,)
        ).fetchall()
    return dict(rows)


def wait_until_succeeded(throwaway_database: str, gids: list[str], deadline: float) -> None:
    while True:
        found = statuses(throwaway_database, gids)
        late = {g: found.get(g, "absent") for g in gids if found.get(g) != "succeeded"}
        if not late:
            return
        assert time.monotonic() < deadline, f"{len(late)} sagas not ended in time: {late}"
        time.sleep(0.1)


def took_effect(p: Participant, gids: list[str]) -> None:
    """Each saga's two actions reached the participant, and nothing was compensated."""
    with p.lock:
        calls = [(c.params.get("gid"), c.path, c.params.get("op")) for c in p.calls]
    actions = {(gid, path) for gid, path, op in calls if op == "action"}
    missing = [
        (g, path) for g in gids for path in ("/flight", "/hotel") if (g, path) not in actions
    ]
    assert missing == []
    assert [c for c in calls if c[2] != "action"] == []


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_sagas_submitted_while_the_log_restarts_are_answered_503_or_run_to_the_end(
    throwaway_pg: PgServer,
    served: Served,
    participant: Participant,
    throwaway_database: str,
    how: str,
) -> None:
    with Load(served, participant) as load:
        time.sleep(1.5)
        back = bounce(throwaway_pg, how)
        time.sleep(1.5)

    assert load.wrong == []  # no 500, no connection reset: a success or a 503
    assert load.accepted and load.refused  # the load went on through the outage
    wait_until_succeeded(throwaway_database, load.accepted, deadline=back + LEASE)

    # a refused submit is safe to repeat with its gid, whether it was written or not
    with httpx.Client(timeout=30) as client:
        again = {gid: submit(client, served, participant, gid) for gid in load.refused}
    assert {gid: r.status_code for gid, r in again.items() if r.status_code != 200} == {}
    wait_until_succeeded(throwaway_database, load.refused, deadline=time.monotonic() + LEASE)
    took_effect(participant, load.accepted + load.refused)


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_an_idle_service_answers_its_first_calls_after_the_log_restarts(
    throwaway_pg: PgServer,
    served: Served,
    participant: Participant,
    throwaway_database: str,
    how: str,
) -> None:
    with httpx.Client(timeout=30) as client:
        assert submit(client, served, participant, "n-before").status_code == 200
        wait_until_succeeded(throwaway_database, ["n-before"], deadline=time.monotonic() + LEASE)
        time.sleep(1.5)  # idle: the claim loop and the lease renewal are between passes
        bounce(throwaway_pg, how)

        assert client.get(served.url + "/health").status_code == 200
        assert client.get(served.url + "/v1/transactions/n-before").json()["status"] == (
            "succeeded"
        )
        assert client.get(served.dtm + "/query", params={"gid": "n-before"}).status_code == 200
        assert submit(client, served, participant, "n-after").status_code == 200
        assert submit(client, served, participant, "d-after").status_code == 200
    wait_until_succeeded(
        throwaway_database, ["n-after", "d-after"], deadline=time.monotonic() + LEASE
    )
    took_effect(participant, ["n-before", "n-after", "d-after"])


def test_while_the_log_is_down_calls_are_503_with_retry_after_and_health_says_so(
    throwaway_pg: PgServer, served: Served, participant: Participant, throwaway_database: str
) -> None:
    with httpx.Client(timeout=30) as client:
        assert submit(client, served, participant, "n-1").status_code == 200
        throwaway_pg.stop()
        try:
            health = client.get(served.url + "/health")
            answers = {
                "native submit": submit(client, served, participant, "n-2"),
                "native read": client.get(served.url + "/v1/transactions/n-1"),
                "native list": client.get(served.url + "/v1/transactions"),
                "dtm submit": submit(client, served, participant, "d-2"),
                "dtm query": client.get(served.dtm + "/query", params={"gid": "n-1"}),
            }
        finally:
            throwaway_pg.start()
        back = {
            "health": client.get(served.url + "/health"),
            "native submit": submit(client, served, participant, "n-2"),
            "dtm submit": submit(client, served, participant, "d-2"),
        }

    assert (health.status_code, health.json()["status"]) == (503, "unhealthy")
    assert {what: (r.status_code, r.headers.get("retry-after")) for what, r in answers.items()} == {
        what: (503, "2") for what in answers
    }
    assert "'n-2'" in answers["native submit"].json()["detail"]  # the gid to repeat with
    assert {what: r.status_code for what, r in back.items()} == {what: 200 for what in back}
    assert back["health"].json()["status"] == "ok"
    wait_until_succeeded(
        throwaway_database, ["n-1", "n-2", "d-2"], deadline=time.monotonic() + LEASE
    )
