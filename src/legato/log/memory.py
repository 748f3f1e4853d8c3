"""The in-memory log: the same contract as the SQL logs, lost with the process.

For unit tests and for trying Legato out; nothing here survives a restart.
"""

from __future__ import annotations

import copy
import itertools
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from .. import _json
from .._errors import IllegalStateChange, LeaseLost, TransactionNotFound
from .._model import EventRecord, Mode, OpRecord, TxRecord, TxStatus
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


def _stored(value: Any, what: str) -> Any:
    """``value`` as a SQL log gives it back: through JSON, refused if JSON cannot carry it."""
    return _json.loads(_json.dumps(value, what=what))


def _stored_ops(ops: list[OpRecord]) -> list[OpRecord]:
    out = [copy.copy(o) for o in ops]
    for o in out:
        o.output = _stored(o.output, "output")
    return out


def _unclaimed(unended: list[TxRecord], before: float) -> list[Unclaimed]:
    """As the SQL logs' ``unclaimed`` query: due before ``before``, held by no one."""
    found: dict[tuple[str, str], tuple[int, float]] = {}
    for t in unended:
        due = t.next_attempt_at
        if due is None or due > before:
            continue
        if t.lease_owner is not None and (t.lease_expires_at or 0.0) >= before:
            continue
        n, since = found.get((str(t.mode), t.name), (0, due))
        found[(str(t.mode), t.name)] = (n + 1, min(since, due))
    rows = [Unclaimed(mode, name, n, since) for (mode, name), (n, since) in found.items()]
    rows.sort(key=lambda u: (-u.count, u.name, u.mode))
    return rows[:UNCLAIMED_NAMES]


def _stored_events(events: list[EventRecord]) -> list[EventRecord]:
    out = [copy.copy(e) for e in events]
    for e in out:
        e.detail = _stored(e.detail, "event detail")
    return out


class MemoryLog:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.batch_observer: Callable[[int, float], None] | None = None  # nothing batched
        self._tx: dict[str, TxRecord] = {}
        self._ops: dict[str, dict[tuple[str, str], OpRecord]] = {}
        self._events: dict[str, list[EventRecord]] = {}
        self._ids = itertools.count(1)
        self._sessions: dict[str, float] = {}
        # lost with the process, as everything here: a new log is a new deployment
        self._deployment = secrets.token_hex(16)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def migrate(self) -> list[str]:
        return []

    async def deployment(self) -> str:
        return self._deployment

    async def schema_versions(self) -> tuple[int, int]:
        return (0, 0)  # no schema: never behind, never ahead

    def _append(self, events: list[EventRecord]) -> None:
        for e in events:
            e.id = next(self._ids)
            self._events.setdefault(e.gid, []).append(e)

    async def create(self, new: NewTransaction) -> TxRecord | None:
        if new.tx.gid in self._tx:
            return copy.deepcopy(self._tx[new.tx.gid])
        tx = copy.copy(new.tx)
        tx.payload = _stored(tx.payload, "payload")
        tx.options = _stored(tx.options, "options")
        ops, events = _stored_ops(new.ops), _stored_events(new.events)
        tx.version = 1
        self._tx[tx.gid] = tx
        self._ops[tx.gid] = {(o.branch, str(o.op)): o for o in ops}
        self._append(events)
        return None

    async def write(self, change: TxWrite) -> None:
        tx = self._tx.get(change.gid)
        if tx is None or tx.lease_owner != change.owner:
            raise LeaseLost(f"{change.gid}: the lease of {change.owner} is lost")
        new_ops, events = _stored_ops(change.ops), _stored_events(change.events)
        tx.status, tx.reason, tx.stuck = change.status, change.reason, change.stuck
        tx.next_attempt_at, tx.updated_at = change.next_attempt_at, change.at
        tx.ended_at = change.at if change.status.ended else None
        tx.version += 1
        if change.handled is not None and tx.requested == change.handled:
            tx.requested = None
        if change.release:
            tx.lease_owner = tx.lease_expires_at = None
            if tx.requested is not None and tx.ended_at is None:
                tx.next_attempt_at = change.at  # a request came in meanwhile: due now
        ops = self._ops[change.gid]
        for o in _stored_ops(change.new_ops):
            o.payload = _stored(o.payload, "op payload")
            ops[(o.branch, str(o.op))] = o
        for o in new_ops:
            key = (o.branch, str(o.op))
            if o.payload is None and key in ops:
                o.payload = ops[key].payload  # a write changes an op's state, not its call
            ops[key] = o
        self._append(events)

    async def register(self, gid: str, ops: Sequence[OpRecord], now: float) -> None:
        tx = self._tx.get(gid)
        have = self._ops.get(gid, {})
        free = tx is not None and (tx.lease_owner is None or (tx.lease_expires_at or 0) < now)
        if (
            tx is None
            or tx.status is not TxStatus.PREPARED
            or not free
            or any(o.key in have for o in ops)
        ):
            registration_refused(gid, copy.deepcopy(tx), list(have.values()), ops, now)
            return
        seq = max((o.seq for o in have.values()), default=-1) + 1
        for o in _stored_ops(list(ops)):
            o.seq = seq
            o.payload = _stored(o.payload, "op payload")
            have[(o.branch, str(o.op))] = o
        self._ops[gid] = have

    async def claim(
        self, owner: str, now: float, until: float, limit: int, names: Sequence[str] | None
    ) -> list[Claimed]:
        due = sorted(
            (
                t
                for t in self._tx.values()
                if t.ended_at is None
                and t.next_attempt_at is not None
                and t.next_attempt_at <= now
                and (t.lease_owner is None or (t.lease_expires_at or 0) < now)
                and (names is None or t.name in names)
            ),
            key=lambda t: t.next_attempt_at or 0,
        )[:limit]
        out = [Claimed(t.gid, t.requested, t.lease_owner) for t in due]
        for t in due:
            t.lease_owner, t.lease_expires_at = owner, until
        return out

    async def renew(
        self, owner: str, gids: Sequence[str], now: float, until: float
    ) -> dict[str, str | None]:
        held = {}
        wanted = set(gids)
        for t in self._tx.values():
            if t.lease_owner == owner and t.ended_at is None and t.gid in wanted:
                t.lease_expires_at = until
                held[t.gid] = t.requested
        return held

    async def release(self, owner: str, gid: str, next_attempt_at: float | None) -> None:
        t = self._tx.get(gid)
        if t is not None and t.lease_owner == owner:
            t.lease_owner = t.lease_expires_at = None
            t.next_attempt_at = next_attempt_at

    async def release_owner(self, owner: str) -> int:
        n = 0
        for t in self._tx.values():
            if t.lease_owner == owner and t.ended_at is None:
                t.lease_owner = t.lease_expires_at = None
                n += 1
        return n

    async def request(
        self,
        gid: str,
        what: str,
        now: float,
        claim: tuple[str, float] | None = None,
        by: str | None = None,
    ) -> TxRecord:
        t = self._tx.get(gid)
        if t is None:
            raise TransactionNotFound(f"no transaction has gid {gid!r}")
        if t.ended_at is not None:
            raise IllegalStateChange(f"{gid} has already ended ({t.status})")
        t.requested, t.next_attempt_at = what, now
        self._append([requested_event(gid, what, now, by)])
        if claim is not None and (t.lease_owner is None or (t.lease_expires_at or 0) < now):
            t.lease_owner, t.lease_expires_at = claim
        return copy.deepcopy(t)

    async def signal(
        self,
        gid: str,
        op: OpRecord,
        now: float,
        claim: tuple[str, float] | None = None,
        by: str | None = None,
    ) -> tuple[TxRecord, bool]:
        t = self._tx.get(gid)
        if t is None:
            raise TransactionNotFound(f"no transaction has gid {gid!r}")
        if t.ended_at is not None or t.mode is not Mode.WORKFLOW:
            refuse_signal(t)
        ops = self._ops[gid]
        key = (op.branch, str(op.op))
        if key in ops:
            return copy.deepcopy(t), False
        ops[key] = _stored_ops([op])[0]
        t.requested = t.requested or "signal"
        t.next_attempt_at = now
        detail = {"signal": op.target, "id": op.branch, **({"by": by} if by else {})}
        self._append([EventRecord(gid, now, "signal", detail=detail)])
        if claim is not None and (t.lease_owner is None or (t.lease_expires_at or 0) < now):
            t.lease_owner, t.lease_expires_at = claim
        return copy.deepcopy(t), True

    async def load(self, gid: str) -> tuple[TxRecord, list[OpRecord]] | None:
        t = self._tx.get(gid)
        if t is None:
            return None
        ops = sorted(self._ops[gid].values(), key=lambda o: (o.seq, str(o.op)))
        return copy.deepcopy(t), copy.deepcopy(ops)

    async def load_many(self, gids: Sequence[str]) -> dict[str, tuple[TxRecord, list[OpRecord]]]:
        found = {}
        for gid in gids:
            loaded = await self.load(gid)
            if loaded is not None:
                found[gid] = loaded
        return found

    async def events(self, gid: str) -> list[EventRecord]:
        return copy.deepcopy(self._events.get(gid, []))

    async def list(self, query: TxQuery) -> list[TxRecord]:
        rows = [
            t
            for t in self._tx.values()
            if (not query.status or t.status in query.status)
            and (query.mode is None or t.mode == query.mode)
            and (query.name is None or t.name == query.name)
            and (query.stuck is None or (t.stuck is not None) == query.stuck)
            and (query.since is None or t.created_at >= query.since)
            and (query.until is None or t.created_at < query.until)
            and (query.search is None or query.search in t.gid)
        ]
        rows.sort(key=lambda t: (-t.created_at, t.gid))
        return copy.deepcopy(rows[query.offset : query.offset + query.limit])

    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self._tx.values():
            out[str(t.status)] = out.get(str(t.status), 0) + 1
        out["stuck"] = sum(1 for t in self._tx.values() if t.stuck and t.ended_at is None)
        return out

    async def summary(self, since: float, unclaimed_before: float | None = None) -> LogSummary:
        unended = [t for t in self._tx.values() if t.ended_at is None]
        counts: dict[str, int] = {}
        for t in unended:
            counts[str(t.status)] = counts.get(str(t.status), 0) + 1
        ended: dict[str, int] = {}
        for t in self._tx.values():
            if t.ended_at is not None and t.ended_at >= since:
                ended[str(t.status)] = ended.get(str(t.status), 0) + 1
        return LogSummary(
            counts=counts,
            stuck=sum(1 for t in unended if t.stuck),
            oldest_unfinished_at=min((t.created_at for t in unended), default=None),
            since=since,
            started=sum(1 for t in self._tx.values() if t.created_at >= since),
            ended=ended,
            unclaimed=[] if unclaimed_before is None else _unclaimed(unended, unclaimed_before),
        )

    async def purge(self, ended_before: float, limit: int) -> int:
        old = sorted(
            (t for t in self._tx.values() if t.ended_at is not None and t.ended_at < ended_before),
            key=lambda t: t.ended_at or 0,
        )[:limit]
        for t in old:
            del self._tx[t.gid]
            self._ops.pop(t.gid, None)
            self._events.pop(t.gid, None)
        return len(old)

    async def session_start(self, digest: str, expires_at: float, now: float) -> None:
        self._sessions = {d: t for d, t in self._sessions.items() if t >= now}
        self._sessions[digest] = expires_at

    async def session_valid(self, digest: str, now: float) -> bool:
        expires_at = self._sessions.get(digest)
        return expires_at is not None and expires_at >= now

    async def session_end(self, digest: str) -> None:
        self._sessions.pop(digest, None)
