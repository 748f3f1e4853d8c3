"""XA xids from (gid, branch_id) and back, and the connections the XA resources refuse.

No database server needed here.
"""

from __future__ import annotations

import sqlite3
import string
from contextlib import closing

import pytest
from hypothesis import given
from hypothesis import strategies as st

import legato.participant
from legato import LegatoError
from legato.participant import xa
from legato.participant.xa import XaUnsupported, Xid, XidError, parse_xid, xid_for


def test_an_xid_is_derived_from_the_gid_branch_id_and_namespace_the_same_on_every_call() -> None:
    xid = xid_for("order-42", "01", "shop")

    assert xid == xid_for("order-42", "01", "shop") == Xid("order-42", "01", "shop")
    assert (xid.gtrid, xid.bqual, xid.pg, str(xid)) == (
        "lgx:order-42",
        "01@shop",
        "lgx:order-42:01@shop",
        "lgx:order-42:01@shop",
    )
    assert xid != xid_for("order-42", "02", "shop")
    assert xid != xid_for("order-42", "01", "shop-2")  # another deployment's, never ours


def test_the_same_branch_in_two_namespaces_has_two_xids_a_database_tells_apart() -> None:
    ours, theirs = xid_for("order-7", "01", "a1b2c3"), xid_for("order-7", "01", "d4e5f6")

    assert ours.gtrid == theirs.gtrid and ours.bqual != theirs.bqual  # MySQL: the pair differs
    assert ours.pg != theirs.pg  # PostgreSQL: GIDs are unique in the whole cluster


def test_the_old_form_made_before_namespaces_is_read_with_namespace_none() -> None:
    old = Xid("order-7", "01", None)

    assert (old.gtrid, old.bqual, old.pg) == ("lgx:order-7", "01", "lgx:order-7:01")
    assert parse_xid("lgx:order-7:01") == old
    assert parse_xid(("lgx:order-7", "01")) == old
    assert old != xid_for("order-7", "01", "shop")


@pytest.mark.parametrize(
    "gid",
    ["a b", "a:b", "it's", "100%", "~7E", "lgx:x:01", "a@b", "Zürich", "🚀", "a\\b", 'x"y;--'],
)
@pytest.mark.parametrize("namespace", ["shop", "db-fe14010b4fe8", "A.b_c-9", None])
def test_any_gid_that_fits_round_trips_and_its_xid_holds_only_safe_characters(
    gid: str, namespace: str | None
) -> None:
    xid = Xid(gid, "b:1@x", namespace)

    assert parse_xid(xid.pg) == xid
    assert parse_xid((xid.gtrid, xid.bqual)) == xid
    assert (xid.gid, xid.branch_id, xid.namespace) == (gid, "b:1@x", namespace)
    safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:@"
    assert set(xid.pg) <= set(safe)


namespaces = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=16)


@given(
    st.text(min_size=1, max_size=70),
    st.text(min_size=1, max_size=70),
    st.none() | namespaces,
)
def test_an_xid_either_round_trips_within_the_databases_limits_or_is_refused(
    gid: str, branch_id: str, namespace: str | None
) -> None:
    try:
        xid = Xid(gid, branch_id, namespace)
    except XidError as refused:
        assert repr(gid) in str(refused)
        return

    assert parse_xid(xid.pg) == xid
    assert parse_xid((xid.gtrid, xid.bqual)) == xid
    assert len(xid.gtrid.encode()) <= 64 and len(xid.bqual.encode()) <= 64
    assert len(xid.pg.encode()) < 200


def test_a_gid_of_60_safe_characters_fits_and_61_is_refused_naming_the_gid() -> None:
    assert xid_for("g" * 60, "01", "n" * 16).gtrid == "lgx:" + "g" * 60

    with pytest.raises(XidError, match=f"gid '{'g' * 61}'.*61 bytes encoded.*MySQL allows 60"):
        xid_for("g" * 61, "01", "shop")


def test_a_branch_id_gets_what_its_namespace_leaves_of_64_bytes() -> None:
    assert xid_for("g-1", "b" * 59, "shop").bqual == "b" * 59 + "@shop"
    assert Xid("g-1", "b" * 64, None).bqual == "b" * 64  # the old form had all 64

    with pytest.raises(XidError, match=r"the branch id 'b{60}' .*MySQL allows 59 beside"):
        xid_for("g-1", "b" * 60, "shop")


@pytest.mark.parametrize(
    ("gid", "branch_id", "problem"),
    [
        ("é" * 11, "01", "66 bytes encoded"),  # 2 UTF-8 bytes each, 3 characters per byte
        ("g-1", "b" * 65, "the branch id 'b{65}' .*MySQL allows 59"),
        ("", "01", "is empty"),
        ("g-1", "", "is empty"),
        (" g-1", "01", "surrounding blanks"),
        ("g\n1", "01", "unprintable"),
    ],
)
def test_ids_that_cannot_be_encoded_losslessly_are_refused(
    gid: str, branch_id: str, problem: str
) -> None:
    with pytest.raises(XidError, match=problem) as caught:
        xid_for(gid, branch_id, "shop")

    assert f"gid {gid!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, LegatoError)


@pytest.mark.parametrize("namespace", ["", "n" * 17, "a b", "a:b", "a@b", "ü", "a~b", 7])
def test_a_namespace_that_cannot_be_part_of_an_xid_is_refused_naming_it(namespace: object) -> None:
    with pytest.raises(XidError, match=r"namespace .* 1-16 of A-Z a-z 0-9 - _ \."):
        xid_for("g-1", "01", namespace)  # type: ignore[arg-type]
    with pytest.raises(XidError, match=r"^xa_namespace "):
        xa.check_namespace(namespace, "xa_namespace")


def test_a_database_namespace_is_a_short_stable_hash_of_its_name() -> None:
    assert xa.database_namespace("ledger") == xa.database_namespace("ledger") == "db-fe14010b4fe8"
    assert xa.database_namespace("ledger_b") != xa.database_namespace("ledger")
    assert len(xa.database_namespace("x" * 64)) == 15


@pytest.mark.parametrize(
    "value",
    [
        "other-app-1",
        "lgx:",
        "lgx:g-1",  # no branch
        "lgy:g-1:01@ns",
        "lgx:g~7e:01@ns",  # not the canonical (upper-case) escape
        "lgx:g~ZZ:01@ns",
        "lgx:g~C3:01@ns",  # half a UTF-8 character
        "lgx:g 1:01@ns",  # an unescaped blank
        "lgx:g:1:01@ns",  # a colon in the gid must be escaped
        "lgx:g-1:01@",  # an empty namespace
        "lgx:g-1:01@n s",
        "lgx:g-1:01@a@b",  # an @ in the branch id must be escaped
        "lgx:g-1:01@" + "n" * 17,
        ("lgx:g-1", "0:1@ns"),
        ("other", "01@ns"),
    ],
)
def test_an_xid_that_is_not_legatos_exact_form_parses_to_none(value: str | tuple[str, str]) -> None:
    assert parse_xid(value) is None


# --- what the XA resources refuse -----------------------------------------------------------


def test_sqlite_is_refused_because_it_has_no_two_phase_commit() -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        for call in (
            lambda: xa.prepare_branch(conn, "g-1", "01", lambda c: None),
            lambda: xa.commit(conn, xid_for("g-1", "01", "shop")),
            lambda: xa.rollback(conn, xid_for("g-1", "01", "shop")),
            lambda: xa.commit_branch(conn, "g-1", "01"),
            lambda: xa.recover(conn),
        ):
            with pytest.raises(XaUnsupported, match=r"^SQLite has no two-phase commit"):
                call()


async def test_sqlite_is_refused_by_the_asyncio_variants_too() -> None:
    async def nothing(c: object) -> None:
        return None

    with closing(sqlite3.connect(":memory:")) as conn:
        with pytest.raises(XaUnsupported, match=r"^SQLite has no two-phase commit"):
            await xa.aprepare_branch(conn, "g-1", "01", nothing)
        with pytest.raises(XaUnsupported, match=r"^SQLite has no two-phase commit"):
            await xa.arecover(conn)


def test_an_unknown_connection_is_refused_naming_what_is_taken() -> None:
    with pytest.raises(XaUnsupported, match=r"cannot use a builtins\.object.*psycopg\.Connection"):
        xa.recover(object())

    assert issubclass(XaUnsupported, TypeError)


def test_bad_ids_are_refused_before_the_connection_is_touched() -> None:
    with pytest.raises(XidError, match="gid 'g\\\\n1'"):
        xa.prepare_branch(object(), "g\n1", "01", lambda c: None)
    with pytest.raises(XidError, match="MySQL allows 48 beside the namespace"):
        xa.commit_branch(object(), "g-1", "b" * 49)  # a database's namespace takes 16 bytes
    with pytest.raises(XidError, match="namespace 'a b'"):
        xa.recover(object(), namespace="a b")


def test_the_xa_api_is_what_all_lists_sorted_and_complete() -> None:
    names = xa.__all__

    assert names == sorted(names, key=lambda n: (not n.isupper(), n))  # ruff's order
    assert all(hasattr(xa, n) for n in names)
    public = {n for n in vars(xa) if not n.startswith("_")}
    typing_helpers = {"annotations", "Awaitable", "Callable", "Generic", "TypeVar", "dataclass"}
    assert public - set(names) - typing_helpers == {"C", "T"}
    assert "xa" in legato.participant.__all__
    errors = [getattr(xa, n) for n in names if n.endswith(("Error", "Busy", "Committed", "Ended"))]
    assert errors and all(issubclass(e, LegatoError) for e in errors)
