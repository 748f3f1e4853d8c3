"""Two coordinator processes on one PostgreSQL log never run the same op at once.

Both submit the same sagas (one first to last, the other last to first), so
each saga is driven by whichever process wrote it first, and the other waits
on the log. Every op counts itself in flight in the participant's database
(a committed increment before it works, a decrement after); a count above one
is a violation, and so is an overlap of two runs' recorded intervals.

One coordinator leaves midway and the other takes its sagas over: killed with
SIGKILL (its open runs end the instant it died; the survivor waits for the
leases to expire), or stopped gracefully as in a rolling deploy (it releases
its leases at once, so its ops still in flight must end first).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import legato
from tests.support.invariants import ops_left_running
from tests.support.processes import REPOSITORY
from tests.support.services import new_pg_database
from tests.support.travel import STEPS, Database, check_outcomes, create_tables, reap

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

WORKER = "tests.chaos.worker"


@pytest.fixture
def participant_url(pg_database: str) -> Iterator[str]:
    """The participant's own PostgreSQL database (all three steps), dropped after."""
    with new_pg_database("legato_svc") as url:
        create_tables(dict.fromkeys(STEPS, url), track=True)
        yield url


def _start(
    log_url: str, participant: str, n: int, owner: str, out: Path, *extra: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_FAULTS"}
    args = [
        sys.executable,
        "-m",
        WORKER,
        "--log",
        log_url,
        "--n",
        str(n),
        "--owner",
        owner,
        "--lease",
        "1",
        "--track",
        "--deadline",
        "90",
        *extra,
    ]
    for step in STEPS:
        args += ["--service", f"{step}={participant}"]
    with out.open("wb") as sink:
        return subprocess.Popen(
            args, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPOSITORY
        )


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def _explain(db: Database, log_url: str, gid: str, left: float) -> str:
    """The runs and the log's timeline of one saga, in seconds after the victim left."""
    runs = db.query(
        "SELECT step, op, attempt, owner, started_at - ?, ended_at - ? FROM op_run "
        "WHERE gid = ? ORDER BY started_at",
        (left, left, gid),
    )
    log = legato.open_log(log_url)
    await log.open()
    try:
        events = await log.events(gid)
    finally:
        await log.close()
    lines = [f"runs of {gid} (seconds after the victim left):", *(f"  {r}" for r in runs)]
    lines.append(f"events of {gid}:")
    lines += [
        f"  {e.at - left:+.3f} {e.kind} {e.branch} {e.op} {e.attempt} {e.detail}" for e in events
    ]
    return "\n".join(lines)


async def _assert_one_run_at_a_time(db: Database, log_url: str, n: int, left: float) -> None:
    violations = db.query("SELECT gid, step, op, owner, in_flight FROM violation")
    if violations:
        detail = await _explain(db, log_url, violations[0][0], left)
        pytest.fail(f"ops ran concurrently: {violations[:20]}\n{detail}")
    overlaps = db.query(
        "SELECT a.gid, a.step, a.op, a.owner, b.owner FROM op_run a JOIN op_run b "
        "ON a.gid = b.gid AND a.step = b.step AND a.op = b.op AND a.id < b.id "
        "WHERE a.started_at < b.ended_at AND b.started_at < a.ended_at"
    )
    assert overlaps == [], f"runs of one op overlapped in time: {overlaps[:20]}"
    assert db.query("SELECT count(*) FROM op_run WHERE ended_at IS NULL") == [(0,)]
    assert db.query("SELECT count(*) FROM op_counter WHERE in_flight <> 0") == [(0,)]

    # the survivor took over sagas the victim was driving when it left
    handed_over = db.query(
        "SELECT count(DISTINCT a.gid) FROM op_run a JOIN op_run b ON a.gid = b.gid "
        "WHERE a.owner = 'coord-a' AND b.owner = 'coord-b' AND b.started_at > ?",
        (left,),
    )[0][0]
    assert handed_over > 0, "nothing was handed over"

    problems = await check_outcomes(log_url, dict.fromkeys(STEPS, db.location), n)
    problems += await ops_left_running(log_url)
    assert not problems, "\n".join(problems[:25])


async def test_after_a_kill_9_the_survivor_never_reruns_an_op_still_running(
    pg_database: str, participant_url: str, tmp_path: Path
) -> None:
    n, kill_after_runs = 100, 60
    db = Database(participant_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        victim = _start(pg_database, participant_url, n, "coord-a", tmp_path / "a.out")
        procs.append(victim)
        survivor = _start(
            pg_database, participant_url, n, "coord-b", tmp_path / "b.out", "--reverse"
        )
        procs.append(survivor)

        deadline = time.monotonic() + 60
        while db.query("SELECT count(*) FROM op_run WHERE owner = 'coord-a'")[0][0] < (
            kill_after_runs
        ):
            assert victim.poll() is None, "the victim ended before it could be killed midway"
            assert time.monotonic() < deadline, _tail(tmp_path / "a.out")
            await asyncio.sleep(0.01)
        victim.kill()
        victim.wait()
        died = time.time()
        # its runs in flight ended with it; the survivor may rerun them only once the
        # victim's leases (1 s) have expired, long after this
        await asyncio.to_thread(reap, participant_url, "coord-a", died)

        assert await asyncio.to_thread(survivor.wait, 90) == 0, _tail(tmp_path / "b.out")
        assert victim.returncode == -signal.SIGKILL
        await _assert_one_run_at_a_time(db, pg_database, n, died)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        db.close()


async def test_a_coordinator_stopped_gracefully_lets_its_ops_end_before_they_rerun(
    pg_database: str, participant_url: str, tmp_path: Path
) -> None:
    # slow ops and plenty of step threads: the survivor has a thread free the moment
    # it claims a released saga, while the leaver's op may still be running
    n, slow = 60, ("--hold", "0.3", "--threads", "32")
    db = Database(participant_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        leaver = _start(
            pg_database,
            participant_url,
            n,
            "coord-a",
            tmp_path / "a.out",
            *slow,
            "--stop-after",
            "2",
        )
        procs.append(leaver)
        survivor = _start(
            pg_database, participant_url, n, "coord-b", tmp_path / "b.out", *slow, "--reverse"
        )
        procs.append(survivor)

        assert await asyncio.to_thread(leaver.wait, 60) == 0, _tail(tmp_path / "a.out")
        said = [
            json.loads(line)
            for line in (tmp_path / "a.out").read_text().splitlines()
            if line.startswith("{")
        ]
        left = next(d["stopping_at"] for d in said if "stopping_at" in d)
        assert await asyncio.to_thread(survivor.wait, 90) == 0, _tail(tmp_path / "b.out")
        await _assert_one_run_at_a_time(db, pg_database, n, left)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        db.close()
