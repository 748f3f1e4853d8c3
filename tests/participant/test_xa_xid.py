"""XA xids from (gid, branch_id) and back, and the connections the XA resources refuse.

No database server needed here.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest
from hypothesis import given
from hypothesis import strategies as st

import legato.participant
from legato import LegatoError
from legato.participant import xa
from legato.participant.xa import XaUnsupported, Xid, XidError, parse_xid, xid_for


def test_an_xid_is_derived_from_the_gid_and_branch_id_the_same_on_every_call() -> None:
    xid = xid_for("order-42", "01")

    assert xid == xid_for("order-42", "01") == Xid("order-42", "01")
    assert (xid.gtrid, xid.bqual, xid.pg, str(xid)) == (
        "lgx:order-42",
        "01",
        "lgx:order-42:01",
        "lgx:order-42:01",
    )
    assert xid != xid_for("order-42", "02")


@pytest.mark.parametrize(
    "gid",
    ["a b", "a:b", "it's", "100%", "~7E", "lgx:x:01", "Zürich", "🚀", "a\\b", 'x"y;--'],
)
def test_any_gid_that_fits_round_trips_and_its_xid_holds_only_safe_characters(gid: str) -> None:
    xid = xid_for(gid, "b:1")

    assert parse_xid(xid.pg) == (gid, "b:1")
    assert parse_xid((xid.gtrid, xid.bqual)) == (gid, "b:1")
    assert set(xid.pg) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:")


@given(st.text(min_size=1, max_size=70), st.text(min_size=1, max_size=70))
def test_an_xid_either_round_trips_within_the_databases_limits_or_is_refused(
    gid: str, branch_id: str
) -> None:
    try:
        xid = xid_for(gid, branch_id)
    except XidError as refused:
        assert repr(gid) in str(refused)
        return

    assert parse_xid(xid.pg) == (gid, branch_id)
    assert len(xid.gtrid.encode()) <= 64 and len(xid.bqual.encode()) <= 64
    assert len(xid.pg.encode()) < 200


def test_a_gid_of_60_safe_characters_fits_and_61_is_refused_naming_the_gid() -> None:
    assert xid_for("g" * 60, "01").gtrid == "lgx:" + "g" * 60

    with pytest.raises(XidError, match=f"gid '{'g' * 61}'.*61 bytes encoded.*MySQL allows 60"):
        xid_for("g" * 61, "01")


@pytest.mark.parametrize(
    ("gid", "branch_id", "problem"),
    [
        ("é" * 11, "01", "66 bytes encoded"),  # 2 UTF-8 bytes each, 3 characters per byte
        ("g-1", "b" * 65, "the branch id 'b{65}' .*MySQL allows 64"),
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
        xid_for(gid, branch_id)

    assert f"gid {gid!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, LegatoError)


@pytest.mark.parametrize(
    "value",
    [
        "other-app-1",
        "lgx:",
        "lgx:g-1",  # no branch
        "lgy:g-1:01",
        "lgx:g~7e:01",  # not the canonical (upper-case) escape
        "lgx:g~ZZ:01",
        "lgx:g~C3:01",  # half a UTF-8 character
        "lgx:g 1:01",  # an unescaped blank
        "lgx:g:1:01",  # a colon in the gid must be escaped
        ("lgx:g-1", "0:1"),
        ("other", "01"),
    ],
)
def test_an_xid_that_is_not_legatos_exact_form_parses_to_none(value: str | tuple[str, str]) -> None:
    assert parse_xid(value) is None


# --- what the XA resources refuse -----------------------------------------------------------


def test_sqlite_is_refused_because_it_has_no_two_phase_commit() -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        for call in (
            lambda: xa.prepare_branch(conn, "g-1", "01", lambda c: None),
            lambda: xa.commit(conn, xid_for("g-1", "01")),
            lambda: xa.rollback(conn, xid_for("g-1", "01")),
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


def test_the_xa_api_is_what_all_lists_sorted_and_complete() -> None:
    names = xa.__all__

    assert names == sorted(names)
    assert all(hasattr(xa, n) for n in names)
    public = {n for n in vars(xa) if not n.startswith("_")}
    typing_helpers = {"annotations", "Awaitable", "Callable", "Generic", "TypeVar", "dataclass"}
    assert public - set(names) - typing_helpers == {"C", "T"}
    assert "xa" in legato.participant.__all__
    errors = [getattr(xa, n) for n in names if n.endswith(("Error", "Busy", "Committed", "Ended"))]
    assert errors and all(issubclass(e, LegatoError) for e in errors)
