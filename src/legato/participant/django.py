"""The barrier for Django: a view decorator that runs the op inside ``transaction.atomic``
on Django's own connection, the barrier's rows in the same transaction.

::

    from django.db.models import F
    from legato import Failure
    from legato.participant.django import barrier_view

    @barrier_view                      # or @barrier_view(using="ledger")
    def debit(request):
        amount = json.loads(request.body)["amount"]
        if not Account.objects.filter(pk=1, balance__gte=amount).update(
            balance=F("balance") - amount
        ):
            raise Failure("insufficient funds")

    urlpatterns = [path("debit", debit)]

The view is the business code: it runs only when the barrier says so (not for a
duplicate, nor for a compensation whose action never ran), inside
``transaction.atomic(using=...)`` on ``django.db.connections[using]``, with the
barrier's row written first in that same transaction. It returns ``None`` or a dict
of extra fields for the answer. The decorator answers (DESIGN section 5): 200
``{"dtm_result": "SUCCESS", "barrier": ...}``; 409 ``{"dtm_result": "FAILURE"}``
when the view raised :class:`legato.Failure` (its transaction rolled back); 400
``{"error": ..., "field": ...}`` when the query string does not name a valid barrier.
Any other exception propagates (a 500: the coordinator retries). The view is
exempt from CSRF checks: its caller is the coordinator, not a browser form.

Inside an outer ``atomic`` block (``ATOMIC_REQUESTS``), the op's block is a savepoint:
the barrier row and the business change still commit, or not, together.

PostgreSQL, MySQL/MariaDB (mysqlclient, or PyMySQL as ``MySQLdb``) and SQLite
backends. Create the table once with :func:`create_table` (from a migration's
``RunPython``, or at start-up). A msg's local transaction runs in
``run_in_barrier(Barrier.for_msg(gid), fn)``, and :func:`query_prepared_view` is
its ``query_prepared`` URL.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

try:
    from django.db import DEFAULT_DB_ALIAS, connections, transaction
    from django.http import JsonResponse
    from django.views.decorators.csrf import csrf_exempt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "legato.participant.django needs Django: pip install 'legato[django]'"
    ) from exc

from .._errors import BarrierRequestError, Failure
from . import _answers
from ._sql import Args, Dialect, ParamStyle
from .barrier import (
    Barrier,
    BarrierOutcome,
    BarrierResult,
    PreparedStatus,
    create_table_inside,
    query_prepared_inside,
)

if TYPE_CHECKING:
    from django.http import HttpRequest

T = TypeVar("T")
View = Callable[..., object]
"""A Django view decorated by :func:`barrier_view`: it returns None or a dict."""

__all__ = [
    "barrier_view",
    "create_table",
    "query_prepared",
    "query_prepared_view",
    "run_in_barrier",
]

_VENDORS: Mapping[str, Dialect] = {
    "postgresql": "postgresql",
    "mysql": "mysql",  # MariaDB too
    "sqlite": "sqlite",
}
_RESERVED = frozenset({"dtm_result", "barrier"})


class _DjangoCursor:
    """The barrier's statements on a Django connection, inside a transaction Django owns.

    Django's cursors take ``%(name)s`` parameters on every backend (SQLite's converts
    them); begin, commit and rollback are ``transaction.atomic``'s, never the barrier's.
    """

    style: ParamStyle = "pyformat"

    def __init__(self, connection: Any) -> None:
        vendor = connection.vendor
        if vendor not in _VENDORS:
            raise TypeError(
                f"the barrier does not speak Django's {vendor!r} backend "
                f"(database {connection.alias!r}); it takes {sorted(_VENDORS)}"
            )
        self.connection = connection
        self.dialect: Dialect = _VENDORS[vendor]

    def begin(self) -> None:
        raise RuntimeError("transaction.atomic begins the barrier's transaction")

    def commit(self) -> None:
        raise RuntimeError("transaction.atomic commits the barrier's transaction")

    def rollback(self) -> None:
        raise RuntimeError("transaction.atomic rolls the barrier's transaction back")

    def execute(self, sql: str, args: Args) -> int:
        with self.connection.cursor() as cur:
            cur.execute(sql, args)
            return int(cur.rowcount)

    def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        with self.connection.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return None if row is None else tuple(row)


def _alias(using: str | None) -> str:
    return DEFAULT_DB_ALIAS if using is None else using


def run_in_barrier(
    barrier: Barrier, fn: Callable[[], T], *, using: str | None = None
) -> BarrierResult[T]:
    """Run ``fn()`` inside ``transaction.atomic(using=using)``, behind ``barrier``'s row.

    The row is written first, in the same transaction; ``fn`` runs only when the
    barrier says so (``result.ran``). If ``fn`` raises, both roll back.
    """
    alias = _alias(using)
    with transaction.atomic(using=alias):
        outcome = barrier.run_inside(_DjangoCursor(connections[alias]))
        value = fn() if outcome is BarrierOutcome.RAN else None
    return BarrierResult(outcome, value)


def _json(answer: _answers.Answer, extra: Mapping[str, object] | None = None) -> Any:
    status, body = answer
    return JsonResponse({**body, **(extra or {})}, status=status)


def _extra(view: View, returned: object) -> dict[str, object] | None:
    if returned is None:
        return None
    if not isinstance(returned, dict):
        raise TypeError(
            f"the barrier view {view.__qualname__} returned a {type(returned).__name__}: it "
            "returns None or a dict of extra fields; the decorator makes the answer"
        )
    clash = _RESERVED & returned.keys()
    if clash:
        raise TypeError(
            f"the barrier view {view.__qualname__} returned {sorted(clash)}: those fields "
            "are the answer's own"
        )
    return returned


def _decorate(view: View, using: str | None) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(view):
        raise TypeError(
            f"barrier_view takes a sync view, not the coroutine function {view.__qualname__}: "
            "transaction.atomic runs on Django's sync connection"
        )

    @functools.wraps(view)
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            barrier = Barrier.from_query(request.GET)
        except BarrierRequestError as exc:
            return _json(_answers.bad_request(exc))

        def business() -> dict[str, object] | None:
            # checked inside the block: a view that returns a response rolls back
            return _extra(view, view(request, *args, **kwargs))

        try:
            result = run_in_barrier(barrier, business, using=using)
        except Failure as exc:
            return _json(_answers.failure(exc))
        return _json(_answers.success(result.outcome), result.value)

    wrapped: Callable[..., Any] = csrf_exempt(answer)
    return wrapped


@overload
def barrier_view(view: View, /) -> Callable[..., Any]: ...
@overload
def barrier_view(*, using: str | None = None) -> Callable[[View], Callable[..., Any]]: ...


def barrier_view(
    view: View | None = None, /, *, using: str | None = None
) -> Callable[..., Any] | Callable[[View], Callable[..., Any]]:
    """Make a Django view a branch op behind the barrier, answering the coordinator.

    ``@barrier_view`` uses the ``default`` database; ``@barrier_view(using="ledger")``
    another one of ``DATABASES``. See the module's documentation for the answers.
    """
    if view is not None:
        return _decorate(view, using)
    return lambda v: _decorate(v, using)


def query_prepared(gid: str, *, using: str | None = None) -> PreparedStatus:
    """Whether the msg ``gid``'s local transaction (run in ``Barrier.for_msg(gid)``)
    committed; from now on it never will if it has not (see
    :func:`legato.participant.query_prepared`)."""
    alias = _alias(using)
    with transaction.atomic(using=alias):
        return query_prepared_inside(_DjangoCursor(connections[alias]), gid)


def query_prepared_view(*, using: str | None = None) -> Callable[..., Any]:
    """A view answering the coordinator's ``query_prepared?gid=...`` for a msg: 200
    SUCCESS if the local transaction committed (deliver), 409 FAILURE if not."""

    def answer(request: HttpRequest) -> Any:
        try:
            status = query_prepared(request.GET.get("gid", ""), using=using)
        except BarrierRequestError as exc:
            return _json(_answers.bad_request(exc))
        return _json(_answers.prepared(status))

    wrapped: Callable[..., Any] = csrf_exempt(answer)
    return wrapped


def create_table(using: str | None = None) -> None:
    """Create ``legato_barrier`` in Django's database ``using`` where it does not exist.

    From a migration: ``migrations.RunPython(lambda apps, schema_editor:
    create_table(schema_editor.connection.alias), migrations.RunPython.noop)``.
    """
    alias = _alias(using)
    with transaction.atomic(using=alias):
        create_table_inside(_DjangoCursor(connections[alias]))
