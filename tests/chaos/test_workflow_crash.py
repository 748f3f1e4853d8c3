"""A coordinator running durable workflows, killed with SIGKILL, loses none of them.

A worker process (``tests.chaos.workflow_worker``) runs forty trip workflows
(``tests.support.trip_workflow``: flight, hotel and car, each service with its own
database; some fail late and roll back, some sleep, some wait for a signal). It is
killed at a named point, then started again under the same owner to resume from
the log alone (it starts nothing; it sends the waiting workflows their signals again,
which the log keeps once):

* ``after_op.action``: a step ran, its outcome is not logged;
* ``before_op.compensate`` / ``after_op.compensate``: during a rollback, an undo's
  start is logged and it has not run / it ran and its outcome is not logged;
* ``after_log_write``: a move is logged, the steps it starts have not run;
* ``after_signal``: a signal is kept in the log, the body has not had it;
* a ``kill -9`` from outside while the sleeping workflows are let go: each must
  wake on time after the restart.

Before the restart the log is read to see that the kill landed where it was meant
to; after it, the services' own databases: every workflow ended as its kind says,
all done or all undone, each booking made once. The suite runs with the log and the
services on SQLite files, and on PostgreSQL databases.

Two coordinator processes on one PostgreSQL log start the same workflows; one is
killed mid-run and the other takes its workflows over once their leases expire.
Every step records its interval in the participant's database: the steps of one
workflow never overlap in time (its body runs them one at a time), so no body ran
on both processes at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato import OpName, OpStatus, TxStatus
from legato._model import OpRecord
from tests.support.invariants import ops_left_running
from tests.support.processes import REPOSITORY
from tests.support.services import new_pg_database
from tests.support.travel import STEPS, Database, Setup, create_tables, reap
from tests.support.trip_workflow import (
    SLEEP,
    check_workflows,
    gid_of,
    index_of,
    kind_of,
    read_log,
    read_services,
    service_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WORKER = "tests.chaos.workflow_worker"
N = 40

# the N-th pass through the point kills the worker, early enough in a run that much is
# still in flight
FAULTS = {
    "after_op.action": 45,
    "before_op.compensate": 8,
    "after_op.compensate": 8,
    "after_log_write": 60,
    "after_signal": 5,
}
ON_TIME = 2.0
"""How late past its time a sleeping workflow may wake, a restart in between."""


def _start(
    setup: Setup, out: Path, owner: str, *extra: str, faults: str | None = None, n: int = N
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_FAULTS"}
    if faults:
        env["LEGATO_FAULTS"] = faults
    args = [sys.executable, "-m", WORKER, "--log", setup.log_url, "--n", str(n),
            "--owner", owner, "--deadline", "60", *extra]  # fmt: skip
    for service, location in setup.locations.items():
        args += ["--service", f"{service}={location}"]
    with out.open("wb") as sink:
        return subprocess.Popen(
            args, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPOSITORY
        )


def _wait(proc: subprocess.Popen[bytes], out: Path, timeout: float = 75) -> int:
    """The worker's exit status, once it has ended (killed if it outlives ``timeout``)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not end in {timeout}s:\n{_tail(out)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run(setup: Setup, tmp_path: Path, run: str, *extra: str, faults: str | None = None) -> int:
    out = tmp_path / f"{run}.out"
    return _wait(_start(setup, out, "chaos-wf", *extra, faults=faults), out)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _assert_no_problems(problems: list[str], tmp_path: Path) -> None:
    outputs = "\n".join(f"--- {p.name}\n{_tail(p, 10)}" for p in sorted(tmp_path.glob("*.out")))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:25]) + "\n" + outputs


async def _resume_and_check(setup: Setup, tmp_path: Path) -> None:
    """Start the worker again, to resume from the log alone, and read back the outcome:
    every workflow ended all done or all undone (the ones it started before the kill)."""
    resumed = await asyncio.to_thread(_run, setup, tmp_path, "2-resume", "--mode", "resume")
    assert resumed == 0, _tail(tmp_path / "2-resume.out")
    _assert_no_problems(
        await check_workflows(setup.log_url, setup.locations, N, complete=False)
        + await ops_left_running(setup.log_url),
        tmp_path,
    )


# -- where the kill landed, read back before the restart ---------------------------------


def _running(ops: list[OpRecord], op: OpName) -> list[str]:
    return [o.branch for o in ops if o.op is op and o.status is OpStatus.RUNNING]


async def _caught(point: str, setup: Setup) -> list[str]:
    """What the log and the services show of the kill having landed at ``point``: each
    workflow (and entry) caught there; ``[]`` if the kill landed elsewhere."""
    found = await read_log(setup.log_url)
    services = read_services(setup.locations)
    caught = []
    for gid, (_, ops) in found.items():
        if point == "after_signal":
            kept = [o.branch for o in ops if o.op is OpName.SIGNAL]
            taken = [o.output for o in ops if o.branch.endswith(".@wait") and o.output]
            if kept and not taken:
                caught.append(f"{gid}: signal {kept} kept, not taken")
            continue
        if point == "after_log_write":  # the ops it started, if any, have not reported
            caught += [f"{gid}: {b}.{op}" for op in OpName for b in _running(ops, op)]
            continue
        op = OpName.ACTION if point == "after_op.action" else OpName.COMPENSATE
        for branch in _running(ops, op):
            service = service_of(branch)
            barrier = {(g, b, o) for g, b, o, _ in services[service]["barrier"]}
            refused = op is OpName.ACTION and service == "car" and kind_of(index_of(gid)) == "late"
            ran = refused or (gid, branch, str(op)) in barrier  # a refusal leaves no row
            if ran == point.startswith("after_op"):
                caught.append(f"{gid}: {branch}.{op} {'ran' if ran else 'has not run'}")
    return caught


# -- one worker, killed at a named point ---------------------------------------------------


@pytest.mark.parametrize("point", list(FAULTS))
async def test_every_workflow_ends_all_done_or_all_undone_after_a_kill_9_at(
    setup: Setup, point: str, tmp_path: Path
) -> None:
    faults = f"{point}@{FAULTS[point]}"
    crashed = await asyncio.to_thread(_run, setup, tmp_path, "1-crash", faults=faults)
    assert crashed == -signal.SIGKILL, f"{faults} never fired:\n{_tail(tmp_path / '1-crash.out')}"
    caught = await _caught(point, setup)
    assert caught, f"nothing in the log shows the kill at {point}"

    await _resume_and_check(setup, tmp_path)


async def _asleep(log_url: str) -> dict[str, float]:
    """The sleeping workflows the log holds let go (nobody's lease), by gid, with the
    time each is due to wake."""
    found = await read_log(log_url)
    asleep = {}
    for gid, (tx, ops) in found.items():
        sleep = next((o for o in ops if o.branch.endswith(".@sleep")), None)
        if (
            tx.status is TxStatus.SUBMITTED
            and tx.lease_owner is None
            and sleep is not None
            and sleep.status is OpStatus.RETRY_WAIT
            and sleep.next_at is not None
        ):
            asleep[gid] = sleep.next_at
    return asleep


async def test_workflows_killed_while_asleep_wake_on_time_after_a_restart(
    setup: Setup, tmp_path: Path
) -> None:
    sleepers = {gid_of(i) for i in range(N) if kind_of(i) == "sleep"}
    out = tmp_path / "1-killed.out"
    proc = _start(setup, out, "chaos-wf")
    try:
        deadline = time.monotonic() + 20
        while set(asleep := await _asleep(setup.log_url)) != sleepers:
            assert proc.poll() is None, f"the worker ended before it was killed:\n{_tail(out)}"
            assert time.monotonic() < deadline, f"asleep: {sorted(asleep)}\n{_tail(out)}"
            await asyncio.sleep(0.05)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = time.time()
    assert min(asleep.values()) > killed + 1.0, "too late to restart before they are due"

    await _resume_and_check(setup, tmp_path)
    late = []
    for gid, (_, ops) in (await read_log(setup.log_url)).items():
        if gid not in sleepers:
            continue
        (began,) = [o.output for o in ops if o.branch.endswith(".@now")]
        (woke,) = [o.updated_at for o in ops if o.branch.endswith(".@sleep")]
        assert isinstance(began, float)
        if not began + SLEEP - 0.05 <= woke <= began + SLEEP + ON_TIME:
            late.append(f"{gid} slept {woke - began:.2f}s of {SLEEP}")
    assert late == []


# -- two coordinators --------------------------------------------------------------------


@pytest.fixture
def participant_url(pg_database: str) -> Iterator[str]:
    """The participant's own PostgreSQL database (all three services), dropped after."""
    with new_pg_database("legato_svc") as url:
        create_tables(dict.fromkeys(STEPS, url), track=True)
        yield url


def _midway(db: Database, runs: int) -> bool:
    """The victim ran ``runs`` steps, and the two coordinators ran steps of one workflow
    each already (one let it go asleep, the other claimed it when it was due)."""
    (ran,) = db.query("SELECT count(*) FROM op_run WHERE owner = 'coord-a'")[0]
    if ran < runs:
        return False
    (both,) = db.query(
        "SELECT count(*) FROM op_run a JOIN op_run b ON a.gid = b.gid AND a.owner <> b.owner"
    )[0]
    return bool(both)


def _assert_steps_one_at_a_time(db: Database, died: float) -> None:
    overlaps = db.query(
        "SELECT a.gid, a.step, a.op, a.owner, b.step, b.op, b.owner, "
        "b.started_at - a.ended_at FROM op_run a JOIN op_run b "
        "ON a.gid = b.gid AND a.id < b.id "
        "WHERE a.started_at < b.ended_at AND b.started_at < a.ended_at"
    )
    assert overlaps == [], f"steps of one workflow overlapped in time: {overlaps[:20]}"
    assert db.query("SELECT count(*) FROM op_run WHERE ended_at IS NULL") == [(0,)]
    assert db.query("SELECT gid, step, op, owner FROM violation") == []
    # the survivor took over workflows the victim was running when it died
    handed_over = db.query(
        "SELECT count(DISTINCT a.gid) FROM op_run a JOIN op_run b ON a.gid = b.gid "
        "WHERE a.owner = 'coord-a' AND b.owner = 'coord-b' AND b.started_at > ?",
        (died,),
    )[0][0]
    assert handed_over > 0, "nothing was handed over"


async def test_two_coordinators_never_run_one_workflows_body_at_once(
    pg_database: str, participant_url: str, tmp_path: Path
) -> None:
    n, kill_after_runs = 160, 60
    setup = Setup(pg_database, dict.fromkeys(STEPS, participant_url))
    common = ("--track", "--lease", "1", "--concurrency", "20")
    db = Database(participant_url)
    procs = []
    try:
        victim = _start(setup, tmp_path / "a.out", "coord-a", *common, n=n)
        procs.append(victim)
        survivor = _start(setup, tmp_path / "b.out", "coord-b", *common, "--reverse", n=n)
        procs.append(survivor)
        deadline = time.monotonic() + 30
        while not _midway(db, kill_after_runs):
            assert victim.poll() is None, "the victim ended before it could be killed midway"
            assert time.monotonic() < deadline, _tail(tmp_path / "a.out")
            await asyncio.sleep(0.01)
        victim.kill()
        victim.wait()
        died = time.time()
        # its runs in flight ended with it; the survivor may run them again only once the
        # victim's leases (1 s) have expired
        await asyncio.to_thread(reap, participant_url, "coord-a", died)
        survived = await asyncio.to_thread(_wait, survivor, tmp_path / "b.out")
        assert survived == 0, _tail(tmp_path / "b.out")
        _assert_steps_one_at_a_time(db, died)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        db.close()
    _assert_no_problems(
        await check_workflows(pg_database, setup.locations, n)
        + await ops_left_running(pg_database),
        tmp_path,
    )
