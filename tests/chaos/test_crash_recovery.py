"""A coordinator killed with SIGKILL at a named fault point loses no saga.

A worker process runs a few hundred trip sagas (flight, hotel, car, each
service with its own database; every third saga is refused by the car service
and compensated). It is started with ``LEGATO_FAULTS`` armed, so that it kills
itself at the N-th pass through a fault point, and restarted under the same
owner name:

1. submit everything, crash at the fault point;
2. restart in resume mode (no resubmission): every saga the log holds ends;
3. resubmit everything, crash again at the same fault point;
4. resubmit everything, no fault: exits 0.

After steps 2 and 4 the services' own databases are read back: every saga
ended all done (three active reservations, the log says succeeded) or all
undone (none active, the log says failed), no op took effect twice, and no
service holds an effect of a saga the log does not know. The suite runs with
the log and the services on SQLite files, and on PostgreSQL databases.

A last test drops the PostgreSQL log's connection under a running worker: the
sagas whose write failed must still end, driven by the same process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psycopg
import pytest

import legato
from tests.support.invariants import ops_left_running
from tests.support.processes import REPOSITORY
from tests.support.services import PG_ADMIN
from tests.support.travel import STEPS, Setup, check_outcomes, create_tables

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

WORKER = "tests.chaos.worker"
N = 240

# the N-th pass through the point kills the worker: each lands early enough in a run
# that the second crash (after a resume) still has plenty of work left to land in
FAULTS = {
    "after_op.action": 100,  # the op ran; its result is not logged
    "after_log_write": 150,  # a decision is logged; the ops it starts have not run
    "after_op.compensate": 30,  # a compensation ran; its result is not logged
    "before_op.compensate": 30,  # a compensation's start is logged; it has not run
}


def _popen(
    setup: Setup, sink: IO[bytes], *, mode: str, faults: str | None = None, timeout: float
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_FAULTS"}
    if faults:
        env["LEGATO_FAULTS"] = faults
    args = [
        sys.executable, "-m", WORKER, "--log", setup.log_url, "--n", str(N),
        "--owner", "chaos-worker", "--mode", mode, "--lease", "2",
        "--deadline", str(timeout - 10),
    ]  # fmt: skip
    for step, location in setup.locations.items():
        args += ["--service", f"{step}={location}"]
    return subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPOSITORY)


def run_worker(
    setup: Setup,
    tmp_path: Path,
    run: str,
    *,
    mode: str = "submit",
    faults: str | None = None,
    timeout: float = 90.0,
) -> int:
    """Run the worker to its end (or its crash); returns its exit status."""
    out = tmp_path / f"{run}.out"
    with out.open("wb") as sink:
        proc = _popen(setup, sink, mode=mode, faults=faults, timeout=timeout)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker run {run} did not end in {timeout}s:\n{_tail(out)}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def _resumed_ops(log_url: str) -> set[str]:
    """Ops that a restarted coordinator found in flight, and so ran again."""
    log = legato.open_log(log_url)
    await log.open()
    try:
        found: set[str] = set()
        for tx in await log.list(legato.TxQuery(limit=10 * N)):
            events = await log.events(tx.gid)
            resumed = {e.at for e in events if e.kind == "resumed"}
            found |= {
                str(e.op) for e in events if e.kind == "op.retry_scheduled" and e.at in resumed
            }
        return found
    finally:
        await log.close()


def _assert_no_problems(problems: list[str], tmp_path: Path) -> None:
    outputs = "\n".join(f"--- {p.name}\n{_tail(p, 10)}" for p in sorted(tmp_path.glob("*.out")))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:25]) + "\n" + outputs


@pytest.mark.parametrize("point", list(FAULTS))
async def test_every_saga_ends_all_done_or_all_undone_after_kill_9(
    setup: Setup, point: str, tmp_path: Path
) -> None:
    faults = f"{point}@{FAULTS[point]}"

    crashed = await asyncio.to_thread(run_worker, setup, tmp_path, "1-crash", faults=faults)
    assert crashed == -signal.SIGKILL, f"the fault point {faults} never fired:\n" + _tail(
        tmp_path / "1-crash.out"
    )

    resumed = await asyncio.to_thread(run_worker, setup, tmp_path, "2-resume", mode="resume")
    assert resumed == 0, _tail(tmp_path / "2-resume.out")
    _assert_no_problems(
        await check_outcomes(setup.log_url, setup.locations, N, complete=False)
        + await ops_left_running(setup.log_url),
        tmp_path,
    )
    # the crash landed mid-op: the restarted coordinator found ops in flight and ran them again
    op = point.split(".")[1] if "." in point else None
    again = await _resumed_ops(setup.log_url)
    assert (op in again) if op else again, f"nothing was resumed in flight: {again}"

    crashed = await asyncio.to_thread(run_worker, setup, tmp_path, "3-crash", faults=faults)
    assert crashed == -signal.SIGKILL, _tail(tmp_path / "3-crash.out")

    finished = await asyncio.to_thread(run_worker, setup, tmp_path, "4-finish")
    assert finished == 0, _tail(tmp_path / "4-finish.out")
    _assert_no_problems(
        await check_outcomes(setup.log_url, setup.locations, N)
        + await ops_left_running(setup.log_url),
        tmp_path,
    )


async def test_sagas_whose_log_write_failed_end_without_a_restart(
    pg_database: str, tmp_path: Path
) -> None:
    """The log's connection drops under a running coordinator: each saga whose write
    failed is left to recovery, and this same coordinator resumes it once its lease
    has expired (no restart, no other coordinator)."""
    setup = Setup(pg_database, {step: str(tmp_path / f"{step}.db") for step in STEPS})
    create_tables(setup.locations)
    log_db = pg_database.rsplit("/", 1)[1]
    flight = sqlite3.connect(setup.locations["flight"])
    out = tmp_path / "worker.out"
    with out.open("wb") as sink:
        proc = _popen(setup, sink, mode="submit", timeout=60)
    try:
        # Drop the writer's connection every 20 bookings (from the 40th) until a write
        # failed on it: a drop while no write is in flight fails none (the idle
        # connection is found closed and replaced), which a loaded machine makes likely.
        dropped, last = 0, 20
        deadline = time.monotonic() + 30
        while dropped < 3 or "leaving it to recovery" not in out.read_text():
            assert proc.poll() is None, "the worker ended before a write failed:\n" + _tail(out)
            assert time.monotonic() < deadline, _tail(out)
            (done,) = flight.execute("SELECT count(*) FROM barrier").fetchone()
            if done >= last + 20:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND application_name = 'legato-writer'",
                        (log_db,),
                    )
                dropped, last = dropped + 1, done
            await asyncio.sleep(0.02)
        assert await asyncio.to_thread(proc.wait, 60) == 0, _tail(out)
    finally:
        flight.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "leaving it to recovery" in out.read_text(), "no log write failed: nothing tested"
    _assert_no_problems(
        await check_outcomes(setup.log_url, setup.locations, N)
        + await ops_left_running(setup.log_url),
        tmp_path,
    )
