"""XA's phase 2 as a transport: an op is a commit or rollback of one prepared branch,
run by the coordinator itself through its own connection to the branch's database.

A resource (``XaResource``) is a database the coordinator reaches by name for phase 2
and recovery; ``Connections`` keeps a few idle connections to each, since a new one
costs more than the commit. The op runs in a step thread, like a sync Python step:
any exception is an unknown outcome, retried.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._dburl import check_url, connect
from .._errors import DefinitionError, ResourceError
from .._model import OpName
from .base import AttemptResult, Done, OpAttempt
from .local import LocalTransport

if TYPE_CHECKING:
    from ..participant.xa import Xid


@dataclass(frozen=True, slots=True)
class XaResource:
    """A database the coordinator reaches for phase 2 and recovery:
    ``postgresql://...`` (psycopg) or ``mysql://user:password@host:port/db`` (PyMySQL;
    ``?ssl=`` as ``legato._dburl.connect`` says)."""

    name: str
    url: str

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("postgresql", "postgres", "mysql", "mariadb"):
            raise DefinitionError(
                f"resource {self.name!r}: an XA resource is postgresql://... or mysql://..., "
                f"not {urlsplit(self.url).scheme or self.url!r} (SQLite has no two-phase commit)"
            )
        check_url(self.url, what=f"resource {self.name!r}")

    @property
    def mysql(self) -> bool:
        return urlsplit(self.url).scheme in ("mysql", "mariadb")

    def connect(self) -> Any:
        """A new autocommit connection (the caller closes it)."""
        return connect(self.url)


_BUSY_PAUSES = (0.002, 0.005, 0.01, 0.02, None)


class Connections:
    """Idle connections to the resources, reused by phase-2 calls from any thread (a
    new connection costs milliseconds, more than the commit); closed at the end."""

    KEEP = 8  # per resource: as many as phase-2 calls usually run at once

    def __init__(self) -> None:
        self._idle: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        with self._lock:
            self._closed = False

    def take(self, resource: XaResource) -> Any:
        with self._lock:
            idle = self._idle.get(resource.url)
            if idle:
                return idle.pop()
        return resource.connect()

    def give(self, resource: XaResource, conn: Any) -> None:
        with self._lock:
            idle = self._idle.setdefault(resource.url, [])
            if not self._closed and len(idle) < self.KEEP:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
            self._closed = True
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def phase2(resource: XaResource, xid: Xid, op: OpName, conns: Connections | None = None) -> None:
    """Commit or roll back one prepared branch (in a step thread); idempotent: a branch
    already done the same way is fine, one done the other way raises. A connection taken
    from ``conns`` goes back there, unless the call failed (it may be broken)."""
    from ..participant import xa

    conn = conns.take(resource) if conns is not None else resource.connect()
    end = xa.commit if op is OpName.COMMIT else xa.rollback
    try:
        for pause in _BUSY_PAUSES:
            try:
                end(conn, xid)
                break
            except xa.BranchBusy:
                # MariaDB: the session that prepared the branch has just closed, and the
                # server has not let go of the branch yet; that takes a moment, which is
                # better spent here than in the coordinator's backoff (100 ms and up)
                if pause is None:
                    raise
                time.sleep(pause)
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    if conns is not None:
        conns.give(resource, conn)
    else:
        conn.close()


@dataclass(frozen=True, slots=True)
class XaCall:
    """Phase 2 of one branch prepared in ``resource`` (by name) under ``namespace``
    (None: the branch was registered before namespaces, and its xid is the old form)."""

    resource: str
    namespace: str | None
    op: OpName

    @staticmethod
    def from_json(data: Mapping[str, Any], op: OpName) -> XaCall:
        namespace = data.get("xa_namespace")
        return XaCall(
            str(data.get("resource", "")), namespace if isinstance(namespace, str) else None, op
        )


class XaTransport:
    """Runs ``XaCall``s in the step threads, through ``resources`` by name."""

    remote = False  # the coordinator's own connection: no participant to pass a trace to

    def __init__(
        self, local: LocalTransport, resources: Mapping[str, XaResource], conns: Connections
    ) -> None:
        self.local = local
        self.resources = resources
        self.conns = conns

    def start(self, call: XaCall, attempt: OpAttempt, *, timeout: float | None, done: Done) -> None:
        from ..participant import xa

        resource = self.resources.get(call.resource)
        xid = xa.Xid(attempt.gid, attempt.branch, call.namespace)

        def work() -> AttemptResult:
            if resource is None:
                raise ResourceError(
                    f"resource {call.resource!r} is not registered with this coordinator"
                )
            phase2(resource, xid, call.op, self.conns)
            return AttemptResult.ok()

        self.local.in_thread(work, timeout, done)
