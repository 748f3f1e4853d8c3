"""The XA resources' pure plans: what each step sends to the database, and what it makes of
the answer, once per dialect; the runners in ``_drivers`` do the I/O, sync or asyncio.

A plan yields commands and receives each one's reply; a command that fails is
thrown back into the plan (as the driver's own exception), so the plan decides
what a database error means: ``XAER_NOTA`` on a commit is "not prepared, look at
the barrier row", on a fresh branch "the session has work of its own" is a
:class:`TransactionInProgress`, and so on.

The branch's barrier row (trans_type ``xa``, op ``action``, barrier ``01``,
reason ``action``) is written inside the branch's own XA transaction, so it is
committed exactly when the branch is. A rollback writes the same row with
reason ``rollback`` once the branch is gone, so a prepare that arrives late
finds it and is refused (a *hanging* action).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeAlias, TypeVar, cast

from ..._errors import TransactionInProgress
from .._sql import Dialect, Execute, Fetch
from ..barrier import BarrierOutcome, barrier_plan
from ._errors import BranchBusy, BranchCommitted, BranchNotCommitted, TransactionEnded
from ._ids import PREFIX, Namespaces, Xid, in_namespace, parse_xid

R = TypeVar("R")

BARRIER_ID = "01"
LOCK_TIMEOUT_MS = 5000
"""How long a request waits for the same branch being prepared by another before BranchBusy
(PostgreSQL; MySQL waits ``innodb_lock_wait_timeout``)."""


class XaOutcome(StrEnum):
    """What :func:`~legato.participant.xa.prepare_branch` did."""

    PREPARED = "prepared"
    """The branch function ran, and its transaction is prepared now."""
    ALREADY_PREPARED = "already_prepared"
    """A previous request prepared this branch, still waiting for phase 2: nothing ran."""
    ALREADY_COMMITTED = "already_committed"
    """This branch committed earlier (its barrier row says so): nothing ran."""
    ROLLED_BACK = "rolled_back"
    """This branch was rolled back before it was prepared (a late, *hanging* prepare): nothing
    ran, nothing is prepared; answer it as a failure."""


@dataclass(frozen=True, slots=True)
class Begin:
    """Begin a local transaction (psycopg outside autocommit: implicitly); the reply is None."""


@dataclass(frozen=True, slots=True)
class Statement:
    """Run one statement without parameters; the reply is its command tag ('' for MySQL)."""

    sql: str


@dataclass(frozen=True, slots=True)
class Rows:
    """Run one query without parameters; the reply is the list of its rows."""

    sql: str


@dataclass(frozen=True, slots=True)
class RollbackOpen:
    """Roll back the local transaction if one is open; the reply is None."""


@dataclass(frozen=True, slots=True)
class RunBranch:
    """Call the branch function on the connection; the reply is None."""


XaCommand: TypeAlias = Begin | Statement | Rows | RollbackOpen | RunBranch | Execute | Fetch
XaReply: TypeAlias = str | list[tuple[object, ...]] | int | tuple[object, ...] | None
XaPlan: TypeAlias = Generator[XaCommand, XaReply, R]
Phase2 = Literal["commit", "rollback"]

# PostgreSQL SQLSTATEs and MySQL error numbers the plans tell apart
PG_UNDEFINED_OBJECT = "42704"  # prepared transaction with identifier ... does not exist
PG_LOCK_NOT_AVAILABLE = "55P03"
MY_XAER_NOTA = 1397  # unknown xid
MY_XAER_RMFAIL = 1399  # the command cannot run in the XA state (DDL, COMMIT, ...)
MY_XAER_OUTSIDE = 1400  # some work is done outside the global transaction
MY_XAER_DUPID = 1440  # the xid already exists
MY_LOCK_WAIT_TIMEOUT = 1205


def pg_sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg or asyncpg error, else None."""
    if type(exc).__module__.partition(".")[0] not in ("psycopg", "asyncpg"):
        return None
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def mysql_errno(exc: BaseException) -> int | None:
    """The error number of a PyMySQL (or aiomysql) error, else None."""
    if type(exc).__module__.partition(".")[0] != "pymysql":
        return None
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _rows(reply: XaReply) -> list[tuple[object, ...]]:
    if not isinstance(reply, list):
        raise TypeError(f"expected rows, got {reply!r}")
    return reply


def _count(reply: XaReply) -> int:
    if not isinstance(reply, int):
        raise TypeError(f"expected a row count, got {reply!r}")
    return reply


def _row(reply: XaReply) -> tuple[object, ...] | None:
    if reply is not None and not isinstance(reply, tuple):
        raise TypeError(f"expected a row, got {reply!r}")
    return reply


def _tag(reply: XaReply) -> str:
    if not isinstance(reply, str):
        raise TypeError(f"expected a command tag, got {reply!r}")
    return reply


def _barrier_row(xid: Xid, reason: str) -> dict[str, object]:
    return {
        "trans_type": "xa",
        "gid": xid.gid,
        "branch_id": xid.branch_id,
        "op": "action",
        "barrier_id": BARRIER_ID,
        "reason": reason,
    }


def _barrier_key(xid: Xid) -> dict[str, object]:
    row = _barrier_row(xid, "")
    return {k: row[k] for k in ("gid", "branch_id", "op", "barrier_id")}


def _branch_barrier(xid: Xid) -> XaPlan[BarrierOutcome]:
    plan = barrier_plan("xa", xid.gid, xid.branch_id, "action", BARRIER_ID)
    # the barrier's plan yields only Execute and Fetch, and gets their replies
    return cast("XaPlan[BarrierOutcome]", plan)


_SKIPPED = {
    BarrierOutcome.DUPLICATE: XaOutcome.ALREADY_COMMITTED,
    BarrierOutcome.HANGING: XaOutcome.ROLLED_BACK,
}


def _in_session(what: str) -> TransactionInProgress:
    return TransactionInProgress(
        f"the connection has a transaction of its own ({what}): commit or roll it back first; "
        "an XA branch runs in a transaction of its own"
    )


# --- phase 1 ------------------------------------------------------------------------------


def prepare_plan(dialect: Dialect, xid: Xid) -> XaPlan[XaOutcome]:
    """Run the branch (barrier row first) in a new 2PC transaction and prepare it."""
    return _pg_prepare(xid) if dialect == "postgresql" else _mysql_prepare(xid)


def _pg_prepare(xid: Xid) -> XaPlan[XaOutcome]:
    yield Begin()
    try:
        # A retry of a prepare whose answer was lost finds the branch prepared (holding
        # its barrier row's lock until phase 2): answer at once instead of waiting on it.
        row = _rows((yield Rows(f"SELECT txid_current(), {_pg_is_prepared(xid)}, {_PG_LOCKS}")))
        txid, prepared, lock_timeout = row[0]
        if prepared:
            yield RollbackOpen()
            return XaOutcome.ALREADY_PREPARED
        # A request racing one still running waits on that row's lock: not for ever.
        yield Statement(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        try:
            outcome = yield from _branch_barrier(xid)
        except Exception as exc:
            if pg_sqlstate(exc) == PG_LOCK_NOT_AVAILABLE:
                raise _busy(xid, "prepare") from exc
            raise
        if outcome is not BarrierOutcome.RAN:
            yield RollbackOpen()
            return _SKIPPED[outcome]
        restore = str(lock_timeout).replace("'", "''")
        yield Rows(f"SELECT set_config('lock_timeout', '{restore}', true)")  # the caller's
        yield RunBranch()
        # Still the same transaction? A COMMIT in the branch function would leave the
        # PREPARE below to prepare an empty (or another) transaction; a failed statement
        # the function swallowed makes this raise, and PREPARE would only roll back.
        if _rows((yield Rows("SELECT txid_current()")))[0][0] != txid:
            raise TransactionEnded(
                f"gid {xid.gid!r} branch {xid.branch_id!r}: the branch function ended the "
                "transaction (it committed or rolled back): the branch must not commit"
            )
        tag = _tag((yield Statement(f"PREPARE TRANSACTION '{xid.pg}'")))
        if tag != "PREPARE TRANSACTION":  # PostgreSQL answers ROLLBACK when it could not
            raise TransactionEnded(f"PREPARE TRANSACTION answered {tag!r}: nothing is prepared")
        return XaOutcome.PREPARED
    except BaseException as exc:
        try:
            yield RollbackOpen()
        except Exception as rollback_error:
            exc.add_note(f"the XA branch's rollback failed too: {rollback_error!r}")
        raise


_PG_LOCKS = "current_setting('lock_timeout')"


def _busy(xid: Xid, op: str) -> BranchBusy:
    return BranchBusy(
        f"gid {xid.gid!r} branch {xid.branch_id!r} is being prepared right now, by another "
        f"request on another connection; retry the {op}"
    )


def _pg_is_prepared(xid: Xid) -> str:
    # GIDs are unique in the whole cluster, not per database
    return f"EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = '{xid.pg}')"


def _mysql_prepare(xid: Xid) -> XaPlan[XaOutcome]:
    if xid in _mysql_xids(_rows((yield Rows("XA RECOVER")))):
        return XaOutcome.ALREADY_PREPARED
    ids = _mysql_ids(xid)
    try:
        yield Statement(f"XA START {ids}")
    except Exception as exc:
        code = mysql_errno(exc)
        if code == MY_XAER_OUTSIDE:
            raise _in_session("with autocommit off, reading a table opens one") from exc
        if code == MY_XAER_RMFAIL:
            raise _in_session("an XA transaction, maybe a branch it prepared") from exc
        if code == MY_XAER_DUPID:
            raise _busy(xid, "prepare") from exc
        raise
    try:
        outcome = yield from _branch_barrier(xid)
        if outcome is not BarrierOutcome.RAN:
            yield from _mysql_abort(ids)
            return _SKIPPED[outcome]
        try:
            yield RunBranch()
        except Exception as exc:
            if mysql_errno(exc) == MY_XAER_RMFAIL:
                raise TransactionEnded(
                    f"gid {xid.gid!r} branch {xid.branch_id!r}: the branch function ran a "
                    "statement that commits implicitly (DDL such as CREATE / ALTER / DROP / "
                    "TRUNCATE, or COMMIT, BEGIN, SET autocommit), which MySQL / MariaDB refuse "
                    f"inside an XA transaction; nothing was prepared ({exc.args[-1]})"
                ) from exc
            raise
        yield Statement(f"XA END {ids}")
        yield Statement(f"XA PREPARE {ids}")
        return XaOutcome.PREPARED
    except BaseException as exc:
        try:
            yield from _mysql_abort(ids)
        except Exception as rollback_error:
            exc.add_note(f"the XA branch's rollback failed too: {rollback_error!r}")
        raise


def _mysql_abort(ids: str) -> XaPlan[None]:
    """End and roll back the branch, whatever state (active, idle, gone) it is in."""
    try:
        yield Statement(f"XA END {ids}")
    except Exception as exc:
        if mysql_errno(exc) not in (MY_XAER_RMFAIL, MY_XAER_NOTA):  # already ended, or gone
            raise
    try:
        yield Statement(f"XA ROLLBACK {ids}")
    except Exception as exc:
        if mysql_errno(exc) != MY_XAER_NOTA:  # an error that rolled the branch back already
            raise


def _mysql_ids(xid: Xid) -> str:
    return f"'{xid.gtrid}','{xid.bqual}'"


def _mysql_xids(rows: list[tuple[object, ...]]) -> list[Xid]:
    """Legato's xids among XA RECOVER's rows (formatID, gtrid_length, bqual_length, data)."""
    found = []
    for format_id, gtrid_length, bqual_length, data in rows:
        if format_id != 1 or not isinstance(gtrid_length, int) or not isinstance(bqual_length, int):
            continue
        raw = data.encode() if isinstance(data, str) else data
        if not isinstance(raw, bytes | bytearray) or not raw.isascii():
            continue
        text = raw.decode("ascii")
        parsed = parse_xid((text[:gtrid_length], text[gtrid_length : gtrid_length + bqual_length]))
        if parsed is not None:
            found.append(parsed)
    return found


# --- phase 2 and recovery -----------------------------------------------------------------


def phase2_plan(dialect: Dialect, xid: Xid, op: Phase2) -> XaPlan[None]:
    """Commit or roll back a prepared branch; confirm from the barrier row when it is gone."""
    if dialect == "postgresql":
        sql = f"{op.upper()} PREPARED '{xid.pg}'"
    else:
        sql = f"XA {op.upper()} {_mysql_ids(xid)}"
    try:
        yield Statement(sql)
        gone = False
    except Exception as exc:
        gone = yield from _not_prepared(dialect, xid, exc)
        if not gone:
            raise
    if op == "commit":
        if gone:
            yield from _confirm_committed(xid)
    else:
        yield from _record_rollback(dialect, xid)


def _not_prepared(dialect: Dialect, xid: Xid, exc: Exception) -> XaPlan[bool]:
    """Whether ``exc`` says the xid is not prepared (so its barrier row tells what happened)."""
    if dialect == "postgresql":
        return pg_sqlstate(exc) == PG_UNDEFINED_OBJECT
    code = mysql_errno(exc)
    if code == MY_XAER_OUTSIDE:
        raise _in_session("with autocommit off, reading a table opens one") from exc
    if code != MY_XAER_NOTA:
        return False
    if xid in _mysql_xids(_rows((yield Rows("XA RECOVER")))):
        raise BranchBusy(
            f"{xid.gtrid!r},{xid.bqual!r} is prepared, but still attached to the session that "
            "prepared it (MariaDB keeps it there until that connection closes): close that "
            "connection, then retry"
        ) from exc
    return True


def _confirm_committed(xid: Xid) -> XaPlan[None]:
    found = _row((yield Fetch("reason", _barrier_key(xid))))
    if found is not None and found[0] == "action":
        return  # the branch's own row: it committed, earlier
    what = "was rolled back" if found is not None else "was rolled back, or never prepared"
    raise BranchNotCommitted(
        f"gid {xid.gid!r} branch {xid.branch_id!r} ({xid.pg}) is not prepared and its barrier "
        f"row shows it never committed: it {what}"
    )


def _record_rollback(dialect: Dialect, xid: Xid) -> XaPlan[None]:
    """Write the branch's barrier row as rolled back, so a late prepare is refused."""
    yield Statement("BEGIN")
    try:
        if dialect == "postgresql":
            # a branch being prepared right now holds the row's lock until its phase 2,
            # which may be this very request, retried: do not wait for it for ever
            yield Statement(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        inserted = _count((yield Execute("insert", _barrier_row(xid, "rollback"))))
        found = None if inserted else _row((yield Fetch("reason", _barrier_key(xid))))
        yield Statement("COMMIT")
    except BaseException as exc:
        try:
            yield RollbackOpen()
        except Exception as rollback_error:
            exc.add_note(f"the rollback of the barrier row failed too: {rollback_error!r}")
        if pg_sqlstate(exc) == PG_LOCK_NOT_AVAILABLE or mysql_errno(exc) == MY_LOCK_WAIT_TIMEOUT:
            raise _busy(xid, "rollback") from exc
        raise
    if found is not None and found[0] == "action":
        raise BranchCommitted(
            f"gid {xid.gid!r} branch {xid.branch_id!r} ({xid.pg}) was asked to roll back, but "
            "it had committed (its barrier row is there): the coordinator's decision and the "
            "database disagree"
        )


def recover_plan(dialect: Dialect, namespace: str | Namespaces) -> XaPlan[list[Xid]]:
    """Legato's prepared (in-doubt) xids in ``namespace``: this database's (PostgreSQL), the
    server's (MySQL, where the namespace is all that tells whose a branch is)."""
    if dialect == "mysql":
        listed = _mysql_xids(_rows((yield Rows("XA RECOVER"))))
        return [x for x in listed if in_namespace(x, namespace)]
    sql = (
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
        f"AND gid LIKE '{PREFIX}%' ORDER BY prepared"
    )
    found = []
    for (gid,) in _rows((yield Rows(sql))):
        parsed = parse_xid(gid) if isinstance(gid, str) else None
        if parsed is not None and in_namespace(parsed, namespace):
            found.append(parsed)
    return found
