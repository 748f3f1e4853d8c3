"""What the SQL log adapters share: the jobs, row mapping, group commit, threads.

Each adapter supplies a DB-API connection (used from one thread at a time),
its named queries and its error translation; the drivers themselves stay in
the adapter modules. Writes run in one writer thread through group commit,
reads in a reader thread, so the event loop never blocks on the database.

A server database may go away under a connection (a restart, a crash, a
fail-over). A connection is checked before each use and replaced when its
server has left; a statement cut off mid-flight runs once more on a fresh
connection where that is safe: a read, or a write known not to have
committed, or one that may run twice (``Repeatable``). Any other write whose
commit was cut off raises ``LogUnavailable``: its outcome is unknown, and the
caller leaves the transaction to recovery, which reads what the log holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .. import _json
from .._errors import LeaseLost, LegatoError, LogError, LogUnavailable, SchemaMismatch
from .._model import EventRecord, Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from ._group import GroupCommit, Job, JobResult, WouldBlock
from ._queries import migrations, queries
from .base import (
    UNCLAIMED_NAMES,
    Claimed,
    LogSummary,
    NewTransaction,
    TxQuery,
    TxWrite,
    Unclaimed,
    refuse_signal,
    registration_refused,
    requested_event,
)

T = TypeVar("T")
Conn = Any  # a DB-API connection: sqlite3.Connection or psycopg.Connection
Row = Any  # a mapping-like row
Params = dict[str, Any]


class Repeatable(ABC):
    """A write that may run once more after its connection was cut off while it was
    committing, when whether it committed is unknown: idempotent by design, or able
    to tell its own earlier write from another's."""

    __slots__ = ()

    @abstractmethod
    def __call__(self, conn: Conn) -> Any: ...

    @abstractmethod
    def again(self, conn: Conn) -> Any:
        """Run in the write's place, the second time."""


class Idempotent(Repeatable):
    """A write whose second run changes nothing that its first did not (a renewal, a
    release, a registration): it repeats as it is."""

    __slots__ = ("run",)

    def __init__(self, run: Job[Conn]) -> None:
        self.run = run

    def __call__(self, conn: Conn) -> Any:
        return self.run(conn)

    def again(self, conn: Conn) -> Any:
        return self.run(conn)


class SqlLog(ABC):
    backend: str
    flushers = 1  # group-commit batches in flight at once (see GroupCommit)

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        self.url = url
        self.auto_migrate = auto_migrate
        self.q = queries(self.backend)
        self._writer_pool = self._reader_pool = _closed_pool()
        self._local = threading.local()
        self._group: GroupCommit[Conn] | None = None
        self.batch_observer: Callable[[int, float], None] | None = None

    # -- what an adapter supplies ---------------------------------------------------

    @abstractmethod
    def _connect(self, role: str) -> Conn:
        """A new connection; ``role`` is 'writer' or 'reader'."""

    @abstractmethod
    def _begin(self, conn: Conn) -> None: ...

    @abstractmethod
    def _translate(self, exc: Exception) -> Exception:
        """Turn a driver error into one of Legato's."""

    @abstractmethod
    def _array(self, values: Sequence[str]) -> Any:
        """A list parameter, as the backend's queries expect it."""

    @abstractmethod
    def _lock_for_migration(self, conn: Conn) -> None: ...

    @abstractmethod
    def _applied_migrations(self, conn: Conn) -> set[int]: ...

    def _healthy(self, conn: Conn) -> bool:
        """Is this idle connection still fit to use (checked before each use)?"""
        return True

    def _lost(self, conn: Conn, exc: Exception) -> bool:
        """Did ``exc`` cut ``conn`` off from its server (a restart, a crash)? A fresh
        connection may then succeed where this one failed."""
        return False

    def _begin_read(self, conn: Conn) -> None:
        """Start a transaction whose statements all read one snapshot."""
        conn.execute("BEGIN")

    # -- threads and connections ----------------------------------------------------

    def _conn(self, role: str) -> Conn:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._healthy(conn):
            self._drop_conn()
            conn = None
        if conn is None:
            conn = self._connect(role)
            self._local.conn = conn
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken; nothing more to do
                conn.close()

    async def _in(self, pool: concurrent.futures.ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        def run(again: bool) -> T:
            conn = None
            try:
                conn = self._conn("reader")
                # one snapshot: a load sees a transaction and its ops as one write left
                # them, never the row of one write with the ops of the next (fn commits)
                self._begin_read(conn)
                return fn(conn)
            except LogError:
                raise
            except Exception as exc:
                lost = conn is not None and self._lost(conn, exc)
                self._drop_conn()
                if lost and again:  # a read is safe to repeat: once, on a fresh connection
                    return run(False)
                raise self._unavailable(exc) if lost else self._translate(exc) from exc

        return await self._in(self._reader_pool, lambda: run(True))

    def _unavailable(self, exc: Exception) -> LogUnavailable:
        error = self._translate(exc)
        return error if isinstance(error, LogUnavailable) else LogUnavailable(str(error))

    def _shared_batch(self, jobs: list[Job[Conn]]) -> bool:
        """May this batch commit alongside another (see GroupCommit)?"""
        return False

    def _inline_batch(self, jobs: list[Job[Conn]]) -> list[JobResult]:
        """Run a batch on the loop's thread, where the adapter allows it (see GroupCommit)."""
        raise WouldBlock

    def _batch_sync(
        self,
        jobs: list[Job[Conn]],
        begin: Callable[[Conn], None] | None = None,
        *,
        again: bool = True,
    ) -> list[JobResult]:
        conn = self._conn("writer")
        committing = False
        try:
            (begin or self._begin)(conn)
            outcomes: list[JobResult] = []
            for job in jobs:
                try:
                    outcomes.append((True, job(conn)))
                except LegatoError as exc:  # raised by the job itself, before any write
                    outcomes.append((False, exc))
            committing = True
            conn.commit()
            return outcomes
        except Exception as exc:
            if self._lost(conn, exc):
                self._drop_conn()
                if not again:
                    raise self._unavailable(exc) from exc
                if not committing:
                    # Cut off before its COMMIT was sent: nothing of it was committed, and
                    # the whole batch runs once more on a fresh connection.
                    return self._batch_sync(jobs, begin, again=False)
                return self._after_cut(jobs, self._unavailable(exc))
            try:
                conn.rollback()
            except Exception:
                self._drop_conn()
            if isinstance(exc, WouldBlock):
                raise  # the inline path gave up before writing: the flusher uses the thread
            error = exc if isinstance(exc, LogError) else self._translate(exc)
            if error is not exc:
                self._drop_conn()
            if len(jobs) > 1 and not isinstance(error, LogUnavailable):
                # The database refused one job (a key, text it cannot store) and the batch
                # was rolled back: the writers that only shared its commit must not fail
                # with it, so each job runs again on its own.
                return [self._alone(job) for job in jobs]
            if error is exc:
                raise
            raise error from exc

    def _alone(self, job: Job[Conn]) -> JobResult:
        try:
            return self._batch_sync([job])[0]
        except LogError as exc:
            return (False, exc)

    def _after_cut(self, jobs: list[Job[Conn]], cut: LogUnavailable) -> list[JobResult]:
        """The batch's commit was cut off (``cut``): whether it committed is unknown. Its
        ``Repeatable`` jobs run once more, together, on a fresh connection; the writers
        of the others, and of those if that fails too, hear that the outcome is unknown."""
        unknown = LogUnavailable(f"{cut} (whether the write was committed is unknown)")
        repeatable = {id(job): job.again for job in jobs if isinstance(job, Repeatable)}
        outcomes: dict[int, JobResult] = {}
        if repeatable:
            with contextlib.suppress(LogError):
                again = self._batch_sync(list(repeatable.values()), again=False)
                outcomes = dict(zip(repeatable, again, strict=True))
        return [outcomes.get(id(job), (False, unknown)) for job in jobs]

    async def _run_batch(self, jobs: list[Job[Conn]]) -> list[JobResult]:
        return await self._in(self._writer_pool, lambda: self._batch_sync(jobs))

    async def _write(self, job: Job[Conn]) -> Any:
        if self._group is None:
            raise LogError("the log is not open")
        return await self._group.submit(job)

    # -- lifecycle and schema ---------------------------------------------------------

    def _ensure_threads(self) -> None:
        # one writer thread (group commit makes it enough) and one reader thread
        if self._writer_pool._shutdown:
            self._writer_pool = concurrent.futures.ThreadPoolExecutor(1, f"legato-{self.backend}-w")
            self._reader_pool = concurrent.futures.ThreadPoolExecutor(1, f"legato-{self.backend}-r")

    async def open(self) -> None:
        self._ensure_threads()
        await self._in(self._writer_pool, self._check_schema)
        self._group = GroupCommit(
            self._run_batch,
            run_inline=self._inline_batch,
            flushers=self.flushers,
            shared=self._shared_batch,
        )
        self._group.observer = self.batch_observer
        self._group.start()

    async def close(self) -> None:
        if self._group is not None:
            await self._group.stop()
            self._group = None
        for pool in (self._writer_pool, self._reader_pool):
            with contextlib.suppress(RuntimeError):  # never opened: nothing to drop
                await self._in(pool, self._drop_conn)
            pool.shutdown(wait=False)  # open() starts new threads
        self._drop_conn()  # the inline path's connection, on the loop's thread

    @property
    def group_stats(self) -> tuple[int, int]:
        """(commits, writes): how well group commit is batching."""
        return (self._group.batches, self._group.jobs) if self._group else (0, 0)

    def _check_schema(self) -> None:
        try:
            conn = self._conn("writer")
            latest = migrations(self.backend)[-1][0]
            applied = self._applied_migrations(conn)
            conn.commit()
            if applied and max(applied) > latest:
                raise SchemaMismatch(
                    f"the log at {self.url} has schema version {max(applied)}, newer than "
                    f"this Legato's {latest}: upgrade Legato"
                )
            if len(applied) < len(migrations(self.backend)):
                if not self.auto_migrate:
                    raise SchemaMismatch()
                self._migrate_sync(conn)
        except LogError:
            raise
        except Exception as exc:
            self._drop_conn()
            raise self._translate(exc) from exc

    def _migrate_sync(self, conn: Conn) -> list[str]:
        done: list[str] = []
        self._begin(conn)
        try:
            self._lock_for_migration(conn)
            applied = self._applied_migrations(conn)
            for number, name, sql in migrations(self.backend):
                if number in applied:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO legato_migrations (version, name, applied_at) VALUES "
                    + ("(?, ?, ?)" if self.backend == "sqlite" else "(%s, %s, %s)"),
                    (number, name, _now()),
                )
                done.append(name)
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        return done

    async def migrate(self) -> list[str]:
        """Apply the migrations not applied yet; returns their names. Needs no ``open()``."""
        self._ensure_threads()

        def run() -> list[str]:
            try:
                conn = self._conn("writer")
                self._applied_migrations(conn)
                conn.commit()
                return self._migrate_sync(conn)
            except Exception as exc:
                self._drop_conn()
                raise self._translate(exc) from exc

        return await self._in(self._writer_pool, run)

    # -- writes ---------------------------------------------------------------------

    async def create(self, new: NewTransaction) -> TxRecord | None:
        tx_params = _tx_params(new.tx)
        op_params = [op_row_params(o) for o in new.ops]
        event_params = [_event_params(e) for e in new.events]

        result: TxRecord | None = await self._write(
            self._create_job(new.tx.gid, tx_params, op_params, event_params)
        )
        return result

    def _create_job(
        self, gid: str, tx_params: Params, op_params: list[Params], event_params: list[Params]
    ) -> Job[Conn]:
        q = self.q

        def job(conn: Conn) -> TxRecord | None:
            cur = conn.cursor()
            cur.execute(q["insert_tx"], tx_params)
            if cur.rowcount == 0:
                cur.execute(q["get_tx"], {"gid": gid})
                return tx_from_row(cur.fetchone())
            cur.executemany(q["insert_op"], op_params)
            if event_params:
                cur.executemany(q["insert_event"], event_params)
            return None

        return job

    async def write(self, change: TxWrite) -> None:
        tx_params = {
            "gid": change.gid,
            "owner": change.owner,
            "at": change.at,
            "status": str(change.status),
            "reason": change.reason,
            "stuck": change.stuck,
            "next_attempt_at": change.next_attempt_at,
            "ended_at": change.at if change.status.ended else None,
            "release": change.release,
            "handled": change.handled,
        }
        op_params = [op_row_params(o) for o in change.ops]
        event_params = [_event_params(e) for e in change.events]

        await self._write(self._write_job(change, tx_params, op_params, event_params))

    def _write_job(
        self,
        change: TxWrite,
        tx_params: Params,
        op_params: list[Params],
        event_params: list[Params],
    ) -> Job[Conn]:
        q = self.q

        new_params = [op_row_params(o) for o in change.new_ops]

        def job(conn: Conn) -> None:
            cur = conn.cursor()
            cur.execute(q["write_tx"], tx_params)
            if cur.rowcount == 0:
                raise LeaseLost(f"{change.gid}: the lease of {change.owner} is lost")
            if new_params:
                cur.executemany(q["insert_op"], new_params)
            if op_params:
                cur.executemany(q["update_op"], op_params)
            if event_params:
                cur.executemany(q["insert_event"], event_params)

        return job

    async def register(self, gid: str, ops: Sequence[OpRecord], now: float) -> None:
        params = [op_row_params(o) for o in ops]
        q = self.q

        def job(conn: Conn) -> None:
            cur = conn.cursor()
            cur.execute(q["next_seq"], {"gid": gid})
            seq = cur.fetchone()["n"]
            inserted = 0
            for p in params:
                cur.execute(q["register_op"], {**p, "seq": seq, "now": now})
                inserted += cur.rowcount
            if inserted == len(params):
                return
            cur.execute(q["get_tx"], {"gid": gid})
            row = cur.fetchone()
            cur.execute(q["get_ops"], {"gid": gid})
            existing = [_op_from_row(r) for r in cur.fetchall()]
            registration_refused(gid, tx_from_row(row) if row else None, existing, ops, now)

        await self._write(Idempotent(job))  # the same branch again changes nothing

    async def claim(
        self, owner: str, now: float, until: float, limit: int, names: Sequence[str] | None
    ) -> list[Claimed]:
        params = {
            "owner": owner,
            "now": now,
            "until": until,
            "limit": limit,
            "any_name": names is None,
            "names": self._array(list(names or ())),
        }

        def job(conn: Conn) -> list[Claimed]:
            cur = conn.cursor()
            cur.execute(self.q["claim"], params)
            claimed = [Claimed(r["gid"], r["requested"], r["previous"]) for r in cur.fetchall()]
            take = self.q.get("claim_take")
            if take is not None and claimed:  # a database whose RETURNING sees no old row
                gids = self._array([c.gid for c in claimed])
                cur.execute(take, {"owner": owner, "until": until, "gids": gids})
            return claimed

        result: list[Claimed] = await self._write(job)
        return result

    async def renew(
        self, owner: str, gids: Sequence[str], now: float, until: float
    ) -> dict[str, str | None]:
        def job(conn: Conn) -> dict[str, str | None]:
            cur = conn.cursor()
            params = {"owner": owner, "until": until, "gids": self._array(list(gids))}
            cur.execute(self.q["renew"], params)
            return {r["gid"]: r["requested"] for r in cur.fetchall()}

        result: dict[str, str | None] = await self._write(Idempotent(job))
        return result

    async def release(self, owner: str, gid: str, next_attempt_at: float | None) -> None:
        params = {"owner": owner, "gid": gid, "next_attempt_at": next_attempt_at}
        await self._write(Idempotent(lambda conn: conn.cursor().execute(self.q["release"], params)))

    async def release_owner(self, owner: str) -> int:
        def job(conn: Conn) -> int:
            cur = conn.cursor()
            cur.execute(self.q["release_owner"], {"owner": owner})
            return int(cur.rowcount)

        result: int = await self._write(Idempotent(job))
        return result

    async def request(
        self,
        gid: str,
        what: str,
        now: float,
        claim: tuple[str, float] | None = None,
        by: str | None = None,
    ) -> TxRecord:
        from .._errors import IllegalStateChange, TransactionNotFound

        q_event = self.q["insert_event"]

        def job(conn: Conn) -> TxRecord:
            cur = conn.cursor()
            if claim is None:
                cur.execute(self.q["request"], {"gid": gid, "what": what, "now": now})
            else:
                owner, until = claim
                params = {"gid": gid, "what": what, "now": now, "owner": owner, "until": until}
                cur.execute(self.q["request_claim"], params)
            updated = cur.rowcount
            cur.execute(self.q["get_tx"], {"gid": gid})
            row = cur.fetchone()
            if row is None:
                raise TransactionNotFound(f"no transaction has gid {gid!r}")
            tx = tx_from_row(row)
            if updated == 0:
                raise IllegalStateChange(f"{gid} has already ended ({tx.status})")
            cur.execute(q_event, _event_params(requested_event(gid, what, now, by)))
            return tx

        result: TxRecord = await self._write(job)
        return result

    async def signal(
        self,
        gid: str,
        op: OpRecord,
        now: float,
        claim: tuple[str, float] | None = None,
        by: str | None = None,
    ) -> tuple[TxRecord, bool]:
        from .._errors import TransactionNotFound

        op_params = op_row_params(op)
        owner, until = claim if claim is not None else (None, None)
        tx_params = {"gid": gid, "now": now, "owner": owner, "until": until}
        detail: dict[str, Any] = {"signal": op.target, "id": op.branch}
        if by:
            detail["by"] = by
        event = _event_params(EventRecord(gid, now, "signal", detail=detail))

        def job(conn: Conn) -> tuple[TxRecord, bool]:
            cur = conn.cursor()
            cur.execute(self.q["signal_op"], op_params)
            new = cur.rowcount > 0
            if new:
                cur.execute(self.q["signal_tx"], tx_params)
                cur.execute(self.q["insert_event"], event)
            cur.execute(self.q["get_tx"], {"gid": gid})
            row = cur.fetchone()
            if row is None:
                raise TransactionNotFound(f"no transaction has gid {gid!r}")
            tx = tx_from_row(row)
            if not new:
                refuse_signal(tx)
            return tx, new

        result: tuple[TxRecord, bool] = await self._write(job)
        return result

    async def purge(self, ended_before: float, limit: int) -> int:
        def job(conn: Conn) -> int:
            cur = conn.cursor()
            cur.execute(self.q["purgeable"], {"before": ended_before, "limit": limit})
            gids = [r["gid"] for r in cur.fetchall()]
            if gids:
                arr = {"gids": self._array(gids)}
                for name in ("purge_events", "purge_ops", "purge_tx"):
                    cur.execute(self.q[name], arr)
            return len(gids)

        result: int = await self._write(job)
        return result

    async def session_start(self, digest: str, expires_at: float, now: float) -> None:
        def job(conn: Conn) -> None:
            cur = conn.cursor()
            cur.execute(self.q["session_forget_expired"], {"now": now})
            cur.execute(self.q["session_start"], {"digest": digest, "expires_at": expires_at})

        await self._write(job)

    async def session_end(self, digest: str) -> None:
        def job(conn: Conn) -> None:
            conn.cursor().execute(self.q["session_end"], {"digest": digest})

        await self._write(job)

    # -- reads ----------------------------------------------------------------------

    async def session_valid(self, digest: str, now: float) -> bool:
        def run(conn: Conn) -> bool:
            cur = conn.cursor()
            cur.execute(self.q["session_valid"], {"digest": digest, "now": now})
            found = cur.fetchone() is not None
            conn.commit()
            return found

        return await self._read(run)

    async def load(self, gid: str) -> tuple[TxRecord, list[OpRecord]] | None:
        def run(conn: Conn) -> tuple[TxRecord, list[OpRecord]] | None:
            cur = conn.cursor()
            cur.execute(self.q["get_tx"], {"gid": gid})
            row = cur.fetchone()
            if row is None:
                conn.commit()
                return None
            cur.execute(self.q["get_ops"], {"gid": gid})
            ops = [_op_from_row(r) for r in cur.fetchall()]
            conn.commit()
            return tx_from_row(row), ops

        return await self._read(run)

    async def load_many(self, gids: Sequence[str]) -> dict[str, tuple[TxRecord, list[OpRecord]]]:
        params = {"gids": self._array(list(gids))}

        def run(conn: Conn) -> dict[str, tuple[TxRecord, list[OpRecord]]]:
            cur = conn.cursor()
            cur.execute(self.q["get_txs"], params)
            found: dict[str, tuple[TxRecord, list[OpRecord]]] = {
                r["gid"]: (tx_from_row(r), []) for r in cur.fetchall()
            }
            if found:
                cur.execute(self.q["get_ops_of"], params)
                for r in cur.fetchall():
                    found[r["gid"]][1].append(_op_from_row(r))
            conn.commit()
            return found

        return await self._read(run)

    async def deployment(self) -> str:
        def run(conn: Conn) -> str:
            row = conn.execute(self.q["deployment"]).fetchone()
            conn.commit()
            if row is None:
                raise LogError(f"the log at {self.url} has no deployment id (legato_deployment)")
            return str(row["id"])

        return await self._read(run)

    async def schema_versions(self) -> tuple[int, int]:
        def run(conn: Conn) -> int:
            row = conn.execute(self.q["schema_version"]).fetchone()
            conn.commit()
            return int(row["version"] or 0) if row is not None else 0

        return await self._read(run), migrations(self.backend)[-1][0]

    async def events(self, gid: str) -> list[EventRecord]:
        def run(conn: Conn) -> list[EventRecord]:
            cur = conn.cursor()
            cur.execute(self.q["get_events"], {"gid": gid})
            out = [_event_from_row(r) for r in cur.fetchall()]
            conn.commit()
            return out

        return await self._read(run)

    async def list(self, query: TxQuery) -> list[TxRecord]:
        params = {
            "any_status": not query.status,
            "statuses": self._array([str(s) for s in query.status]),
            "mode": query.mode,
            "name": query.name,
            "stuck": query.stuck,
            "since": query.since,
            "until": query.until,
            "search": query.search,
            "limit": query.limit,
            "offset": query.offset,
        }

        # the stuck ones (the dashboard asks for them on every page) have an index of their own
        sql = self.q["list_stuck" if query.stuck else "list_tx"]

        def run(conn: Conn) -> list[TxRecord]:
            cur = conn.cursor()
            cur.execute(sql, params)
            out = [tx_from_row(r) for r in cur.fetchall()]
            conn.commit()
            return out

        return await self._read(run)

    async def counts(self) -> dict[str, int]:
        def run(conn: Conn) -> dict[str, int]:
            cur = conn.cursor()
            cur.execute(self.q["count_by_status"], {})
            out = {str(r["status"]): int(r["n"]) for r in cur.fetchall()}
            cur.execute(self.q["count_stuck"], {})
            out["stuck"] = int(cur.fetchone()["n"])
            conn.commit()
            return out

        return await self._read(run)

    async def summary(self, since: float, unclaimed_before: float | None = None) -> LogSummary:
        def run(conn: Conn) -> LogSummary:
            cur = conn.cursor()
            cur.execute(self.q["count_unfinished"], {})
            counts = {str(r["status"]): int(r["n"]) for r in cur.fetchall()}
            cur.execute(self.q["count_stuck"], {})
            stuck = int(cur.fetchone()["n"])
            cur.execute(self.q["oldest_unfinished"], {})
            oldest = cur.fetchone()["t"]
            cur.execute(self.q["count_started_since"], {"since": since})
            started = int(cur.fetchone()["n"])
            cur.execute(self.q["count_ended_since"], {"since": since})
            ended = {str(r["status"]): int(r["n"]) for r in cur.fetchall()}
            unclaimed = []
            if unclaimed_before is not None:
                cur.execute(
                    self.q["unclaimed"], {"before": unclaimed_before, "limit": UNCLAIMED_NAMES}
                )
                unclaimed = [
                    Unclaimed(str(r["mode"]), str(r["name"]), int(r["n"]), float(r["due_since"]))
                    for r in cur.fetchall()
                ]
            conn.commit()
            return LogSummary(
                counts=counts,
                stuck=stuck,
                oldest_unfinished_at=None if oldest is None else float(oldest),
                since=since,
                started=started,
                ended=ended,
                unclaimed=unclaimed,
            )

        return await self._read(run)


def _closed_pool() -> concurrent.futures.ThreadPoolExecutor:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.shutdown()
    return pool


# -- rows <-> records -----------------------------------------------------------------


def _now() -> float:
    import time

    return time.time()


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (ours hold no ';' inside literals)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _tx_params(tx: TxRecord) -> dict[str, Any]:
    return {
        "gid": tx.gid,
        "mode": str(tx.mode),
        "name": tx.name,
        "fingerprint": tx.fingerprint,
        "status": str(tx.status),
        "payload": _json.dumps(tx.payload),
        "payload_version": _json.JSON_SCHEMA_VERSION,
        "options": _json.dumps(tx.options, what="options"),
        "reason": tx.reason,
        "stuck": tx.stuck,
        "created_at": tx.created_at,
        "updated_at": tx.updated_at,
        "timeout_at": tx.timeout_at,
        "next_attempt_at": tx.next_attempt_at,
        "lease_owner": tx.lease_owner,
        "lease_expires_at": tx.lease_expires_at,
    }


def op_row_params(o: OpRecord) -> dict[str, Any]:
    return {
        "gid": o.gid,
        "branch": o.branch,
        "op": str(o.op),
        "seq": o.seq,
        "target": o.target,
        "status": str(o.status),
        "attempts": o.attempts,
        "budget": o.budget,
        "next_at": o.next_at,
        "output": None if o.output is None else _json.dumps(o.output, what="output"),
        "error": o.error,
        "completed": o.completed,
        "updated_at": o.updated_at,
        "payload": None if o.payload is None else _json.dumps(o.payload, what="op payload"),
    }


def _event_params(e: EventRecord) -> dict[str, Any]:
    return {
        "gid": e.gid,
        "at": e.at,
        "kind": e.kind,
        "branch": e.branch,
        "op": e.op,
        "attempt": e.attempt,
        "detail": _json.dumps(e.detail, what="event detail") if e.detail else "{}",
    }


def tx_from_row(r: Row) -> TxRecord:
    return TxRecord(
        gid=r["gid"],
        mode=Mode(r["mode"]),
        name=r["name"],
        fingerprint=r["fingerprint"],
        status=TxStatus(r["status"]),
        payload=_json.loads(r["payload"]),
        options=_json.loads(r["options"]) or {},
        reason=r["reason"],
        stuck=r["stuck"],
        requested=r["requested"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        ended_at=r["ended_at"],
        timeout_at=r["timeout_at"],
        next_attempt_at=r["next_attempt_at"],
        lease_owner=r["lease_owner"],
        lease_expires_at=r["lease_expires_at"],
        version=r["version"],
    )


def _op_from_row(r: Row) -> OpRecord:
    return OpRecord(
        gid=r["gid"],
        branch=r["branch"],
        op=OpName(r["op"]),
        seq=r["seq"],
        target=r["target"],
        status=OpStatus(r["status"]),
        attempts=r["attempts"],
        budget=r["budget"],
        next_at=r["next_at"],
        output=_json.loads(r["output"]),
        error=r["error"],
        completed=r["completed"],
        updated_at=r["updated_at"],
        payload=_json.loads(r["payload"]),
    )


def _event_from_row(r: Row) -> EventRecord:
    return EventRecord(
        id=r["id"],
        gid=r["gid"],
        at=r["at"],
        kind=r["kind"],
        branch=r["branch"],
        op=r["op"],
        attempt=r["attempt"],
        detail=_json.loads(r["detail"]) or {},
    )
