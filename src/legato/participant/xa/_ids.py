"""XA transaction ids derived from (gid, branch_id, namespace), and back again.

One branch of one global transaction has one xid, the same on every call, so
phase 2 and recovery need nothing but the gid, the branch id and the namespace::

    gtrid = "lgx:" + enc(gid)                  MySQL / MariaDB: XA ... 'gtrid','bqual'
    bqual = enc(branch_id) + "@" + namespace
    pg    = gtrid + ":" + bqual                PostgreSQL: PREPARE TRANSACTION 'pg'

The **namespace** says whose branch it is. ``XA RECOVER`` lists every branch
prepared on a MySQL server, and a PostgreSQL GID is unique in the whole cluster,
so two deployments sharing a database server see each other's branches; each
recovers only its own namespace's (DESIGN section 8). A coordinator's namespace
comes from its log (``Coordinator.xa_namespace``); a service's, by default, from
the name of its database (:func:`database_namespace`). A namespace is 1-16 of
``A-Z a-z 0-9 - _ .``. Xids made before namespaces (``lgx:order-7:01``, namespace
None: the *old form*) are still read, and ended where a caller asks by xid, but
no automatic pass lists them.

``enc`` keeps ``A-Z a-z 0-9 - _ .`` and writes every other UTF-8 byte as ``~XX``
(upper-case hex), so an xid holds only characters that need no quoting in either
database, and it decodes back to exactly the gid and branch id it came from.
MySQL caps gtrid and bqual at 64 bytes each: an encoded gid gets 60 after the
prefix, an encoded branch id what its namespace leaves (64 - 1 - its length);
PostgreSQL caps its GID below 200 bytes, which the MySQL caps keep well under.
What does not fit is refused, never truncated.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from enum import Enum

from ._errors import XidError

PREFIX = "lgx:"
"""Every Legato xid starts with this; recovery ignores any other xid in the database."""

SEPARATOR = "@"
"""Between the encoded branch id and the namespace, in bqual (``enc`` never writes it)."""

NAMESPACE_MAX = 16
"""The longest namespace: each of its bytes is one the branch id cannot have."""

MYSQL_PART_BYTES = 64
"""MySQL's and MariaDB's limit on each of gtrid and bqual."""

PG_GID_BYTES = 199
"""PostgreSQL's limit on a prepared transaction's GID (GIDSIZE 200, with the final NUL)."""

_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")
_HEX = frozenset("0123456789ABCDEF")


class Namespaces(Enum):
    """The type of :data:`EVERY_NAMESPACE`."""

    EVERY = "every"


EVERY_NAMESPACE = Namespaces.EVERY
"""``recover(conn, namespace=EVERY_NAMESPACE)``: Legato's xids of every namespace, the old
form included (its namespace is None). For an operator who looks before ending anything by
hand, never for an automatic pass: the others are other deployments' branches."""


def check_namespace(value: object, field: str = "namespace") -> str:
    """``value`` if it can be an XA namespace; :class:`XidError` naming ``field`` if not."""
    if not isinstance(value, str) or not 0 < len(value) <= NAMESPACE_MAX or set(value) - _SAFE:
        raise XidError(
            f"{field} {value!r} cannot be an XA namespace: it is 1-{NAMESPACE_MAX} of "
            "A-Z a-z 0-9 - _ ."
        )
    return value


def database_namespace(database: str) -> str:
    """The namespace a service's branches get by default: ``db-`` and a short hash of the
    name of the database they write to, so that services with databases of their own on one
    server never list each other's branches.

    >>> database_namespace("ledger")
    'db-fe14010b4fe8'
    """
    return "db-" + hashlib.sha256(database.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _encode(value: str) -> str:
    return "".join(
        chr(b) if chr(b) in _SAFE else f"~{b:02X}" for b in value.encode("utf-8", "surrogatepass")
    )


def _decode(text: str) -> str | None:
    """The value ``text`` encodes, or None if ``text`` is not an encoding at all."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _SAFE:
            out.append(ord(ch))
            i += 1
        elif ch == "~" and len(text) >= i + 3 and set(text[i + 1 : i + 3]) <= _HEX:
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            return None
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _check(field_name: str, value: str, encoded: str, limit: int, gid: str, beside: str) -> None:
    problem = None
    if not value:
        problem = "is empty"
    elif value != value.strip() or not value.isprintable():
        problem = "has surrounding blanks or unprintable characters"
    elif len(encoded) > limit:
        problem = (
            f"takes {len(encoded)} bytes encoded ({encoded!r}), and MySQL allows {limit}{beside} "
            f"(safe characters A-Z a-z 0-9 - _ . take 1 byte, any other 3 per UTF-8 byte)"
        )
    if problem is not None:
        raise XidError(
            f"gid {gid!r}: the {field_name} {value!r} cannot be an XA transaction id: {problem}"
        )


@dataclass(frozen=True, slots=True)
class Xid:
    """The XA transaction id of one branch of one global transaction, in one namespace.

    ``gtrid`` and ``bqual`` are what MySQL / MariaDB take, ``pg`` is the GID
    PostgreSQL takes; ``str(xid)`` is ``pg``. ``namespace`` None is the old form,
    made before namespaces. Build one with :func:`xid_for` (or ``Xid(gid,
    branch_id, namespace)``); it raises :class:`XidError` for ids that do not fit.
    """

    gid: str
    branch_id: str
    namespace: str | None
    gtrid: str = field(init=False, repr=False, compare=False)
    bqual: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suffix = ""
        if self.namespace is not None:
            suffix = SEPARATOR + check_namespace(self.namespace)
        gtrid = PREFIX + _encode(self.gid)
        branch = _encode(self.branch_id)
        _check("gid", self.gid, gtrid[len(PREFIX) :], MYSQL_PART_BYTES - len(PREFIX), self.gid, "")
        beside = f" beside the namespace ({suffix!r})" if suffix else ""
        _check(
            "branch id", self.branch_id, branch, MYSQL_PART_BYTES - len(suffix), self.gid, beside
        )
        object.__setattr__(self, "gtrid", gtrid)
        object.__setattr__(self, "bqual", branch + suffix)
        assert len(self.pg) <= PG_GID_BYTES  # 64 + 1 + 64: the MySQL limits keep it short

    @property
    def pg(self) -> str:
        """The GID of this branch's prepared transaction in PostgreSQL."""
        return f"{self.gtrid}:{self.bqual}"

    def __str__(self) -> str:
        return self.pg


def xid_for(gid: str, branch_id: str, namespace: str) -> Xid:
    """The xid of branch ``branch_id`` of global transaction ``gid`` in ``namespace``: the
    same on every call.

    >>> xid_for("order-42", "01", "shop").pg
    'lgx:order-42:01@shop'
    """
    return Xid(gid, branch_id, check_namespace(namespace))


def parse_xid(value: str | tuple[str, str]) -> Xid | None:
    """The :class:`Xid` a Legato xid is, or None for an xid that is not Legato's.

    ``value`` is a PostgreSQL GID (``xid.pg``, as ``pg_prepared_xacts`` lists it),
    or a MySQL ``(gtrid, bqual)`` pair. Only the exact forms :class:`Xid` makes are
    Legato's (the old form too, as namespace None): anything else, another
    application's xid included, is None.

    >>> parse_xid("lgx:order-42:01@shop")
    Xid(gid='order-42', branch_id='01', namespace='shop')
    """
    if isinstance(value, tuple):
        gtrid, bqual = value
    else:
        gtrid, _, bqual = value.rpartition(":")
    if not gtrid.startswith(PREFIX):
        return None
    branch, separated, namespace = bqual.rpartition(SEPARATOR)
    if not separated:  # the old form
        branch = bqual
    gid = _decode(gtrid[len(PREFIX) :])
    branch_id = _decode(branch)
    if gid is None or branch_id is None:
        return None
    try:
        xid = Xid(gid, branch_id, namespace if separated else None)
    except XidError:
        return None
    return xid if (xid.gtrid, xid.bqual) == (gtrid, bqual) else None


def in_namespace(xid: Xid, namespace: str | Namespaces) -> bool:
    """Whether a recovery pass over ``namespace`` takes ``xid``."""
    return namespace is EVERY_NAMESPACE or xid.namespace == namespace
