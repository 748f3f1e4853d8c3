"""The API of the modes an initiator begins and ends itself: TCC and XA (two-phase
commit). A transaction of either is written prepared, its branches are registered
while it is (``Log.register``), and its initiator's submit or abort is a request
that the coordinator holding it carries out. Mixed into ``Coordinator``."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._allow import AllowList
from ._bounds import check_branch_id, check_gid
from ._errors import DefinitionError, GidConflict, IllegalStateChange
from ._handle import Handle
from ._model import Mode, OpRecord, TxRecord, TxStatus
from ._msg import DEFAULT_MSG_TIMEOUT, prepared_msg
from ._tcc import DEFAULT_TCC_TIMEOUT, TccTransaction, branch_ops, may_end, prepared
from ._xa import RecoveryReport, XaResource, XaTransaction, http_branch_ops, prepared_xa
from ._xa import branch_ops as xa_branch_ops
from ._xa import recover as recover_xa
from .transports.broker import BrokerCall
from .transports.http import HttpCall

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .log import Log, NewTransaction
    from .participant.xa import Xid


class InitiatedModes:
    """``Coordinator``'s TCC and XA methods (this class is only ever its base)."""

    log: Log
    resources: dict[str, XaResource]
    participants: AllowList

    if TYPE_CHECKING:

        @property
        def xa_namespace(self) -> str: ...

        def _require_started(self) -> None: ...

        async def _create(self, new: NewTransaction) -> TxRecord | None: ...

        async def get(self, gid: str) -> tuple[TxRecord, list[OpRecord]]:
            raise NotImplementedError

        async def _request(self, gid: str, what: str, *, drive: bool = False) -> None: ...

        def handle(self, gid: str) -> Handle:
            raise NotImplementedError

    def _coordinator(self) -> Coordinator:
        return self  # type: ignore[return-value]  # mixed into Coordinator only

    # -- XA ---------------------------------------------------------------------------

    def register_resource(self, name: str, url: str) -> None:
        """A database this coordinator reaches for XA's phase 2 and recovery: every
        coordinator sharing the log should know the same resources by the same names."""
        self.resources[name] = XaResource(name, url)

    def xa(
        self, gid: str | None = None, *, timeout_to_fail: float = DEFAULT_TCC_TIMEOUT
    ) -> XaTransaction:
        """A two-phase commit transaction for ``async with``: see ``legato._xa``."""
        return XaTransaction(self._coordinator(), gid, timeout_to_fail)

    async def begin_xa(
        self, gid: str | None = None, *, timeout_to_fail: float | None = DEFAULT_TCC_TIMEOUT
    ) -> str:
        """Write a prepared XA transaction; branches are then registered and prepared."""
        self._require_started()
        _check_gid(gid)
        gid = gid or uuid.uuid4().hex
        existing = await self._create(prepared_xa(gid, timeout_to_fail, time.time()))
        if existing is not None and (
            existing.mode is not Mode.XA or existing.status is not TxStatus.PREPARED
        ):
            raise IllegalStateChange(f"{gid} exists already ({existing.mode}, {existing.status})")
        return gid

    async def register_xa_branch(self, gid: str, branch: str, resource: str) -> Xid:
        """Record a branch (and its resource) before it prepares: write-ahead. Returns its
        xid, in this coordinator's namespace: prepare the branch under it
        (``xa.prepare_branch(conn, gid, branch, fn, namespace=xid.namespace)``), or phase 2
        and recovery will not find it."""
        from .participant import xa

        check_branch_id(branch)
        self._require_started()
        xid = xa.xid_for(gid, branch, self.xa_namespace)  # refuses ids that make no xid
        now = time.time()
        await self.log.register(gid, xa_branch_ops(gid, branch, resource, xid, now), now)
        return xid

    async def register_xa_http_branch(self, gid: str, branch: str, call: HttpCall | str) -> None:
        """Record a branch an HTTP service prepared itself (DTM's XA flow): phase 2 calls
        its URL with ``op=commit`` or ``op=rollback``."""
        self._require_started()
        check_branch_id(branch)
        now = time.time()
        call = HttpCall(call) if isinstance(call, str) else call
        self.participants.check(call.url, f"branch {branch} url")
        await self.log.register(gid, http_branch_ops(gid, branch, call, now), now)

    async def recover_xa(self) -> RecoveryReport:
        """Resolve Legato's branches left prepared in the registered resources: commit
        where the log holds the decision to commit, roll back where it holds an abort
        or nothing at all (presumed abort)."""
        return await recover_xa(self._coordinator())

    # -- msg --------------------------------------------------------------------------

    async def begin_msg(
        self,
        gid: str | None,
        steps: Sequence[HttpCall | BrokerCall],
        *,
        query_prepared: HttpCall | None = None,
        timeout_to_fail: float | None = DEFAULT_MSG_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Write a prepared message (two-phase message): ``steps`` deliver it once it is
        submitted (``submit_msg``); if it is still prepared after ``timeout_to_fail``
        seconds, ``query_prepared`` is asked whether its local transaction committed.
        Idempotent by ``gid``."""
        self._require_started()
        _check_gid(gid)
        if not steps:
            raise DefinitionError("a message needs at least one step to deliver it")
        for i, step in enumerate(steps):
            if isinstance(step, HttpCall):
                self.participants.check(step.url, f"steps.{i}.action")
        if query_prepared is not None:
            self.participants.check(query_prepared.url, "query_prepared")
        if timeout_to_fail is not None and not _positive(timeout_to_fail):
            raise DefinitionError(
                f"timeout_to_fail must be a positive number of seconds, not {timeout_to_fail!r}"
            )
        gid = gid or uuid.uuid4().hex
        new = prepared_msg(gid, steps, query_prepared, timeout_to_fail, headers, time.time())
        existing = await self._create(new)
        if existing is not None and existing.mode is not Mode.MSG:
            raise GidConflict(f"gid {gid!r} is already used by a {existing.mode} transaction")
        return gid

    async def submit_msg(self, gid: str) -> Handle:
        """The local transaction committed: deliver the message's branches."""
        await self._expect(gid, Mode.MSG)
        return await self.submit_tcc(gid)

    async def abort_msg(self, gid: str, reason: str = "the local transaction failed") -> Handle:
        """The local transaction did not commit: the message is dropped, never delivered."""
        await self._expect(gid, Mode.MSG)
        return await self.abort_tcc(gid, reason)

    async def _expect(self, gid: str, mode: Mode) -> None:
        tx, _ = await self.get(gid)
        if tx.mode is not mode:
            raise IllegalStateChange(f"{gid} is a {tx.mode} transaction, not a {mode} one")

    # -- TCC --------------------------------------------------------------------------

    def tcc(
        self,
        gid: str | None = None,
        *,
        timeout_to_fail: float = DEFAULT_TCC_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> TccTransaction:
        """A TCC transaction for ``async with``: see ``legato._tcc``."""
        return TccTransaction(
            self._coordinator(), gid, timeout_to_fail=timeout_to_fail, headers=headers
        )

    async def begin_tcc(
        self,
        gid: str | None = None,
        *,
        timeout_to_fail: float | None = DEFAULT_TCC_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Write a prepared TCC transaction; idempotent by ``gid``. Past ``timeout_to_fail``
        seconds still prepared, it is cancelled (``None``: it waits for its initiator)."""
        self._require_started()
        _check_gid(gid)
        if timeout_to_fail is not None and not _positive(timeout_to_fail):
            raise DefinitionError(
                f"timeout_to_fail must be a positive number of seconds, not {timeout_to_fail!r}"
            )
        gid = gid or uuid.uuid4().hex
        existing = await self._create(prepared(gid, timeout_to_fail, headers, time.time()))
        if existing is not None and existing.mode is not Mode.TCC:
            raise GidConflict(f"gid {gid!r} is already used by a {existing.mode} transaction")
        if existing is not None and existing.status is not TxStatus.PREPARED:
            raise IllegalStateChange(f"current status '{existing.status}', cannot prepare")
        return gid

    async def register_tcc_branch(
        self, gid: str, branch: str, confirm: HttpCall, cancel: HttpCall
    ) -> None:
        """Add a branch (its confirm and cancel calls) to a prepared TCC transaction."""
        self._require_started()
        check_branch_id(branch)
        self.participants.check(confirm.url, f"branch {branch} confirm")
        self.participants.check(cancel.url, f"branch {branch} cancel")
        now = time.time()
        await self.log.register(gid, branch_ops(gid, branch, confirm, cancel, now), now)

    async def submit_tcc(self, gid: str) -> Handle:
        """The tries all succeeded: confirm every branch."""
        tx, _ = await self.get(gid)
        if may_end(tx, "submit"):
            await self._request(gid, "submit", drive=True)
        return self.handle(gid)

    async def abort_tcc(self, gid: str, reason: str = "aborted by the initiator") -> Handle:
        """Cancel every branch (newest first)."""
        tx, _ = await self.get(gid)
        if may_end(tx, "abort"):
            await self._request(gid, f"abort:{reason[:500]}", drive=True)
        return self.handle(gid)


def _check_gid(gid: object) -> None:
    """A gid given by the caller (None: one is made) is checked before anything is written."""
    if gid is not None:
        check_gid(gid)


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0
