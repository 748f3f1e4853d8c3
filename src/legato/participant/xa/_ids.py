"""XA transaction ids derived from (gid, branch_id), and back again.

One branch of one global transaction has one xid, the same on every call, so
phase 2 and recovery need nothing but the gid and the branch id::

    gtrid = "lgx:" + enc(gid)          MySQL / MariaDB: XA ... 'gtrid','bqual'
    bqual = enc(branch_id)
    pg    = gtrid + ":" + bqual        PostgreSQL: PREPARE TRANSACTION 'pg'

``enc`` keeps ``A-Z a-z 0-9 - _ .`` and writes every other UTF-8 byte as ``~XX``
(upper-case hex), so an xid holds only characters that need no quoting in either
database, and it decodes back to exactly the gid and branch id it came from.
MySQL caps gtrid and bqual at 64 bytes each (so an encoded gid gets 60 after the
prefix); PostgreSQL caps its GID below 200 bytes, which the MySQL caps keep well
under. What does not fit is refused, never truncated.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from ._errors import XidError

PREFIX = "lgx:"
"""Every Legato xid starts with this; recovery ignores any other xid in the database."""

MYSQL_PART_BYTES = 64
"""MySQL's and MariaDB's limit on each of gtrid and bqual."""

PG_GID_BYTES = 199
"""PostgreSQL's limit on a prepared transaction's GID (GIDSIZE 200, with the final NUL)."""

_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")
_HEX = frozenset("0123456789ABCDEF")


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


def _check(field_name: str, value: str, encoded: str, limit: int, gid: str) -> None:
    problem = None
    if not value:
        problem = "is empty"
    elif value != value.strip() or not value.isprintable():
        problem = "has surrounding blanks or unprintable characters"
    elif len(encoded) > limit:
        problem = (
            f"takes {len(encoded)} bytes encoded ({encoded!r}), and MySQL allows {limit} "
            f"(safe characters A-Z a-z 0-9 - _ . take 1 byte, any other 3 per UTF-8 byte)"
        )
    if problem is not None:
        raise XidError(
            f"gid {gid!r}: the {field_name} {value!r} cannot be an XA transaction id: {problem}"
        )


@dataclass(frozen=True, slots=True)
class Xid:
    """The XA transaction id of one branch of one global transaction.

    ``gtrid`` and ``bqual`` are what MySQL / MariaDB take, ``pg`` is the GID
    PostgreSQL takes; ``str(xid)`` is ``pg``. Build one with :func:`xid_for`
    (or ``Xid(gid, branch_id)``); it raises :class:`XidError` for ids that do
    not fit.
    """

    gid: str
    branch_id: str
    gtrid: str = field(init=False, repr=False, compare=False)
    bqual: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        gtrid = PREFIX + _encode(self.gid)
        bqual = _encode(self.branch_id)
        _check("gid", self.gid, gtrid[len(PREFIX) :], MYSQL_PART_BYTES - len(PREFIX), self.gid)
        _check("branch id", self.branch_id, bqual, MYSQL_PART_BYTES, self.gid)
        object.__setattr__(self, "gtrid", gtrid)
        object.__setattr__(self, "bqual", bqual)
        assert len(self.pg) <= PG_GID_BYTES  # 64 + 1 + 64: the MySQL limits keep it short

    @property
    def pg(self) -> str:
        """The GID of this branch's prepared transaction in PostgreSQL."""
        return f"{self.gtrid}:{self.bqual}"

    def __str__(self) -> str:
        return self.pg


def xid_for(gid: str, branch_id: str) -> Xid:
    """The xid of branch ``branch_id`` of global transaction ``gid``: the same on every call.

    >>> xid_for("order-42", "01").pg
    'lgx:order-42:01'
    """
    return Xid(gid, branch_id)


def parse_xid(value: str | tuple[str, str]) -> tuple[str, str] | None:
    """``(gid, branch_id)`` of a Legato xid, or None for an xid that is not Legato's.

    ``value`` is a PostgreSQL GID (``xid.pg``, as ``pg_prepared_xacts`` lists it),
    or a MySQL ``(gtrid, bqual)`` pair. Only the exact form :func:`xid_for` makes
    is Legato's: anything else, another application's xid included, is None.

    >>> parse_xid("lgx:order-42:01")
    ('order-42', '01')
    """
    if isinstance(value, tuple):
        gtrid, bqual = value
    else:
        gtrid, _, bqual = value.rpartition(":")
    if not gtrid.startswith(PREFIX):
        return None
    gid = _decode(gtrid[len(PREFIX) :])
    branch_id = _decode(bqual)
    if gid is None or branch_id is None:
        return None
    try:
        xid = Xid(gid, branch_id)
    except XidError:
        return None
    return (gid, branch_id) if (xid.gtrid, xid.bqual) == (gtrid, bqual) else None
