"""The log port's contract: every adapter (memory, SQLite, PostgreSQL) passes it.

Times are fixed numbers, never the wall clock: a lease is aged by claiming it
with an expiry in the past of the next claim, not by sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

import legato
from legato import LeaseLost, Log, TxQuery, TxStatus, open_log
from legato._model import EventRecord, Mode, OpName, OpRecord, OpStatus
from legato.log import UNCLAIMED_GRACE, Claimed, NewTransaction, unclaimed_since
from tests.support.records import LEASE, T0, change, loaded, new, ops_of, tx_of


async def close(log: Log) -> None:
    await log.close()


@pytest.fixture
async def log(any_log_url: str) -> AsyncIterator[Log]:
    log = open_log(any_log_url)
    await log.open()
    try:
        yield log
    finally:
        await close(log)


def free(gid: str, **tx: Any) -> NewTransaction:
    """A transaction no coordinator holds, due at T0 unless told otherwise."""
    return new(gid, lease_owner=None, lease_expires_at=None, **tx)


def without_ids(events: list[EventRecord]) -> list[EventRecord]:
    return [dataclasses.replace(e, id=None) for e in events]


async def end(log: Log, gid: str, at: float, status: TxStatus = TxStatus.SUCCEEDED) -> None:
    await log.write(change(gid, at=at, status=status, next_attempt_at=None, release=True))


# -- create -----------------------------------------------------------------------------


async def test_a_created_transaction_loads_back_exactly_as_written(log: Log) -> None:
    written = new("g1")
    assert await log.create(written) is None

    loaded = await log.load("g1")
    assert loaded is not None
    tx, ops = loaded
    assert tx == dataclasses.replace(written.tx, version=1)
    assert ops == written.ops
    events = await log.events("g1")
    assert without_ids(events) == written.events
    assert all(e.id is not None for e in events)


async def test_a_load_during_writes_sees_one_write_whole_never_parts_of_two(log: Log) -> None:
    created = new("g1")
    await log.create(created)
    writing = True

    async def write_on() -> None:
        at = T0
        while writing:
            at += 1
            ops = [
                dataclasses.replace(o, attempts=int(at - T0), updated_at=at) for o in created.ops
            ]
            await log.write(change("g1", at=at, ops=ops))
            await asyncio.sleep(0)  # the memory log never yields on its own

    writer = asyncio.create_task(write_on())
    try:
        for _ in range(500):
            tx, ops = await loaded(log, "g1")
            assert {o.updated_at for o in ops} == {tx.updated_at}
            await asyncio.sleep(0)
    finally:
        writing = False
        await writer


async def test_the_schema_versions_are_the_logs_and_this_legatos_and_agree_once_open(
    any_log_url: str,
) -> None:
    log = open_log(any_log_url)
    await log.open()
    try:
        found, built = await log.schema_versions()
        assert found == built  # opening migrated it
        if any_log_url == "memory://":
            assert built == 0  # no schema
        else:
            assert built > 0
    finally:
        await log.close()


async def test_the_deployment_id_is_made_once_and_every_log_on_the_same_store_reads_it(
    any_log_url: str,
) -> None:
    first, again = open_log(any_log_url), open_log(any_log_url)
    await first.open()
    await again.open()
    try:
        made = await first.deployment()
        assert len(made) == 32 and set(made) <= set("0123456789abcdef")
        assert await first.deployment() == made
        if any_log_url == "memory://":  # each memory log is a store, and a deployment, of its own
            assert await again.deployment() != made
        else:
            assert await again.deployment() == made
    finally:
        await close(first)
        await close(again)


async def test_an_unknown_gid_loads_as_none_with_no_events(log: Log) -> None:
    assert await log.load("nope") is None
    assert await log.events("nope") == []


async def test_load_many_reads_back_each_transaction_it_holds_as_load_does(log: Log) -> None:
    await log.create(new("g1"))
    await log.create(new("g2", name="shop"))
    await log.write(change("g2", at=T0 + 1, status=TxStatus.FAILED, reason="no stock"))

    found = await log.load_many(["g2", "nope", "g1"])

    assert found == {"g1": await log.load("g1"), "g2": await log.load("g2")}
    assert await log.load_many([]) == {}


async def test_creating_a_taken_gid_returns_the_existing_row_and_writes_nothing(
    log: Log,
) -> None:
    first = new("g1")
    await log.create(first)

    second = new("g1", name="shop", payload={"other": True}, created_at=T0 + 5)
    second.ops = second.ops[:1]
    second.events.append(EventRecord("g1", T0 + 5, "late"))
    existing = await log.create(second)

    assert existing == dataclasses.replace(first.tx, version=1)
    assert await log.load("g1") == (existing, first.ops)
    assert without_ids(await log.events("g1")) == first.events


# -- write --------------------------------------------------------------------------------


async def test_the_owners_write_updates_the_row_and_the_ops_it_names_and_appends_events(
    log: Log,
) -> None:
    created = new("g1")
    await log.create(created)
    flight = dataclasses.replace(
        created.ops[0],
        status=OpStatus.SUCCEEDED,
        attempts=1,
        output={"seat": "4C"},
        completed=0,
        updated_at=T0 + 1,
    )
    hotel = dataclasses.replace(
        created.ops[2],
        status=OpStatus.RETRY_WAIT,
        attempts=1,
        next_at=T0 + 2,
        error="timeout",
        updated_at=T0 + 1,
    )
    event = EventRecord("g1", T0 + 1, "op_succeeded", "flight", "action", 1, {"seat": "4C"})

    await log.write(
        change(
            "g1",
            at=T0 + 1,
            reason="hotel slow",
            next_attempt_at=T0 + 2,
            ops=[flight, hotel],
            events=[event],
        )
    )

    tx, ops = await loaded(log, "g1")
    assert (tx.status, tx.reason, tx.stuck) == (TxStatus.SUBMITTED, "hotel slow", None)
    assert (tx.updated_at, tx.next_attempt_at, tx.ended_at) == (T0 + 1, T0 + 2, None)
    assert (tx.lease_owner, tx.lease_expires_at) == ("alpha", T0 + LEASE)
    assert tx.version == 2
    assert tx.created_at == T0 and tx.payload == created.tx.payload
    assert ops == [flight, created.ops[1], hotel, created.ops[3]]
    assert without_ids(await log.events("g1")) == [*created.events, event]


async def test_a_write_by_another_owner_raises_lease_lost_and_changes_nothing(
    log: Log,
) -> None:
    await log.create(new("g1"))
    before = await log.load("g1")
    events_before = await log.events("g1")
    op = dataclasses.replace((await ops_of(log, "g1"))[0], status=OpStatus.FAILED)

    with pytest.raises(LeaseLost):
        await log.write(
            change(
                "g1",
                owner="beta",
                status=TxStatus.FAILED,
                release=True,
                ops=[op],
                events=[EventRecord("g1", T0 + 1, "intruder")],
            )
        )

    assert await log.load("g1") == before
    assert await log.events("g1") == events_before


async def test_a_write_to_an_unknown_gid_raises_lease_lost(log: Log) -> None:
    with pytest.raises(LeaseLost):
        await log.write(change("ghost"))
    assert await log.load("ghost") is None
    assert await log.events("ghost") == []


async def test_a_write_with_release_gives_the_lease_up(log: Log) -> None:
    await log.create(new("g1"))

    await log.write(change("g1", next_attempt_at=T0 + 5, release=True))

    tx = await tx_of(log, "g1")
    assert (tx.lease_owner, tx.lease_expires_at, tx.next_attempt_at) == (None, None, T0 + 5)
    with pytest.raises(LeaseLost):
        await log.write(change("g1"))
    assert [c.gid for c in await log.claim("beta", T0 + 5, T0 + 35, 10, None)] == ["g1"]


@pytest.mark.parametrize("status", [TxStatus.SUCCEEDED, TxStatus.FAILED])
async def test_an_ending_write_sets_ended_at_and_others_do_not(log: Log, status: TxStatus) -> None:
    await log.create(new("g1"))
    await log.write(change("g1", at=T0 + 1, status=TxStatus.ABORTING))
    assert (await tx_of(log, "g1")).ended_at is None

    await log.write(change("g1", at=T0 + 2, status=status, next_attempt_at=None))

    tx = await tx_of(log, "g1")
    assert (tx.status, tx.ended_at, tx.updated_at) == (status, T0 + 2, T0 + 2)


async def test_events_append_in_order_with_increasing_ids(log: Log) -> None:
    await log.create(new("g1"))
    await log.create(new("g2"))
    kinds = []
    for i in range(5):
        batch = [EventRecord("g1", T0 + i, f"e{i}.{j}") for j in range(3)]
        kinds += [e.kind for e in batch]
        await log.write(change("g1", at=T0 + i, events=batch))
        await log.write(change("g2", at=T0 + i, events=[EventRecord("g2", T0 + i, "other")]))

    events = await log.events("g1")
    assert [e.kind for e in events] == ["submitted", "op_started", *kinds]
    ids = [e.id for e in events]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


# -- claim ----------------------------------------------------------------------------------


async def test_claim_takes_only_due_unended_transactions_with_a_free_or_expired_lease(
    log: Log,
) -> None:
    await log.create(free("due"))
    await log.create(free("due_exactly_now", next_attempt_at=T0 + 10))
    await log.create(free("later", next_attempt_at=T0 + 11))
    await log.create(free("parked", next_attempt_at=None))
    await log.create(new("held", lease_owner="beta", lease_expires_at=T0 + 20))
    await log.create(new("expired", lease_owner="beta", lease_expires_at=T0 + 9))
    await log.create(new("ended"))
    # ended, though otherwise due: free lease, next attempt in the past
    await log.write(change("ended", status=TxStatus.SUCCEEDED, next_attempt_at=T0, release=True))

    claimed = await log.claim("alpha", T0 + 10, T0 + 40, 100, None)

    assert sorted(c.gid for c in claimed) == ["due", "due_exactly_now", "expired"]
    assert all(c.requested is None for c in claimed)
    # a takeover names the owner whose lease had expired
    assert {c.gid: c.previous for c in claimed} == {
        "due": None,
        "due_exactly_now": None,
        "expired": "beta",
    }
    for gid in ("due", "due_exactly_now", "expired"):
        tx = await tx_of(log, gid)
        assert (tx.lease_owner, tx.lease_expires_at) == ("alpha", T0 + 40)
    for gid, owner in (("later", None), ("parked", None), ("held", "beta"), ("ended", None)):
        assert (await tx_of(log, gid)).lease_owner == owner
    assert await log.claim("gamma", T0 + 10, T0 + 40, 100, None) == []


async def test_claim_takes_the_longest_due_first_up_to_the_limit(log: Log) -> None:
    for i in range(6):
        await log.create(free(f"g{i}", next_attempt_at=T0 - i))

    first = await log.claim("alpha", T0, T0 + LEASE, 2, None)
    second = await log.claim("alpha", T0, T0 + LEASE, 3, None)
    third = await log.claim("alpha", T0, T0 + LEASE, 3, None)

    assert [c.gid for c in first] and {c.gid for c in first} == {"g5", "g4"}
    assert {c.gid for c in second} == {"g3", "g2", "g1"}
    assert [c.gid for c in third] == ["g0"]


async def test_claim_takes_only_the_saga_names_given(log: Log) -> None:
    await log.create(free("t1", name="trip"))
    await log.create(free("s1", name="shop"))
    await log.create(free("p1", name="pay"))

    assert await log.claim("alpha", T0, T0 + LEASE, 10, []) == []
    claimed = await log.claim("alpha", T0, T0 + LEASE, 10, ["trip", "pay"])
    assert sorted(c.gid for c in claimed) == ["p1", "t1"]
    assert [c.gid for c in await log.claim("alpha", T0, T0 + LEASE, 10, None)] == ["s1"]


async def test_a_live_lease_of_another_owner_is_not_claimed_and_an_expired_one_is(
    log: Log,
) -> None:
    await log.create(free("g1"))
    assert [c.gid for c in await log.claim("alpha", T0, T0 + 5, 10, None)] == ["g1"]

    assert await log.claim("beta", T0 + 4, T0 + 34, 10, None) == []
    assert (await tx_of(log, "g1")).lease_owner == "alpha"

    assert [c.gid for c in await log.claim("beta", T0 + 6, T0 + 36, 10, None)] == ["g1"]
    tx = await tx_of(log, "g1")
    assert (tx.lease_owner, tx.lease_expires_at) == ("beta", T0 + 36)
    # the old owner is fenced off: its late write lands nowhere
    with pytest.raises(LeaseLost):
        await log.write(change("g1", owner="alpha", status=TxStatus.FAILED))
    assert (await tx_of(log, "g1")).status is TxStatus.SUBMITTED
    await log.write(change("g1", owner="beta", at=T0 + 7))


async def test_claim_returns_the_pending_request(log: Log) -> None:
    await log.create(free("g1", next_attempt_at=None))
    await log.request("g1", "abort", T0 + 3)

    assert await log.claim("alpha", T0 + 3, T0 + 33, 10, None) == [Claimed("g1", "abort")]


async def test_two_owners_claiming_at_once_never_get_the_same_gid(any_log_url: str) -> None:
    rows = 300
    first = open_log(any_log_url)
    # two coordinators on one database; the in-memory log is one process's, so shared
    second = first if any_log_url.startswith("memory:") else open_log(any_log_url)
    await first.open()
    if second is not first:
        await second.open()
    try:
        await asyncio.gather(*(first.create(free(f"g{i:03}")) for i in range(rows)))

        async def drain(log: Log, owner: str) -> list[str]:
            got: list[str] = []
            while batch := await log.claim(owner, T0, T0 + LEASE, 7, None):
                got += [c.gid for c in batch]
            return got

        a, b = await asyncio.gather(drain(first, "alpha"), drain(second, "beta"))

        assert not set(a) & set(b)
        assert len(a) == len(set(a)) and len(b) == len(set(b))
        assert sorted(a + b) == [f"g{i:03}" for i in range(rows)]
        for gid in a[:5] + b[:5]:
            assert (await tx_of(first, gid)).lease_owner == ("alpha" if gid in a else "beta")
    finally:
        await close(first)
        if second is not first:
            await close(second)


# -- renew, release ----------------------------------------------------------------------------


async def test_renew_extends_the_owners_live_leases_and_returns_their_requests(
    log: Log,
) -> None:
    await log.create(new("mine"))
    await log.create(new("asked"))
    await log.create(new("theirs", lease_owner="beta"))
    await log.create(new("done"))
    await log.write(change("done", status=TxStatus.SUCCEEDED, next_attempt_at=None))
    await log.request("asked", "retry", T0 + 2)

    held = await log.renew("alpha", ["mine", "asked"], T0 + 10, T0 + 40)

    assert held == {"mine": None, "asked": "retry"}
    assert (await tx_of(log, "mine")).lease_expires_at == T0 + 40
    assert (await tx_of(log, "asked")).lease_expires_at == T0 + 40
    assert (await tx_of(log, "theirs")).lease_expires_at == T0 + LEASE
    assert (await tx_of(log, "done")).lease_expires_at == T0 + LEASE


async def test_renew_leaves_the_leases_it_is_not_given_to_expire(log: Log) -> None:
    """A lease whose runner stopped (on a log error) must expire, to be claimed again."""
    await log.create(new("driven"))
    await log.create(new("abandoned"))

    held = await log.renew("alpha", ["driven"], T0 + 10, T0 + 40)

    assert held == {"driven": None}
    assert (await tx_of(log, "abandoned")).lease_expires_at == T0 + LEASE
    claimed = await log.claim("beta", T0 + LEASE + 1, T0 + 99, 10, None)
    assert [c.gid for c in claimed] == ["abandoned"]


async def test_renew_does_not_return_a_lease_taken_over_by_another_owner(log: Log) -> None:
    await log.create(new("g1", lease_expires_at=T0 + 5))
    await log.claim("beta", T0 + 6, T0 + 36, 10, None)

    assert await log.renew("alpha", ["g1"], T0 + 7, T0 + 37) == {}
    tx = await tx_of(log, "g1")
    assert (tx.lease_owner, tx.lease_expires_at) == ("beta", T0 + 36)


async def test_release_frees_the_lease_and_sets_when_the_transaction_is_due(
    log: Log,
) -> None:
    await log.create(new("g1"))

    await log.release("alpha", "g1", T0 + 10)

    tx = await tx_of(log, "g1")
    assert (tx.lease_owner, tx.lease_expires_at, tx.next_attempt_at) == (None, None, T0 + 10)
    assert await log.claim("beta", T0 + 9, T0 + 39, 10, None) == []
    assert [c.gid for c in await log.claim("beta", T0 + 10, T0 + 40, 10, None)] == ["g1"]


async def test_release_with_no_due_time_parks_the_transaction(log: Log) -> None:
    await log.create(new("g1"))
    await log.release("alpha", "g1", None)

    assert (await tx_of(log, "g1")).next_attempt_at is None
    assert await log.claim("beta", T0 + 1000, T0 + 1030, 10, None) == []


async def test_release_by_another_owner_changes_nothing(log: Log) -> None:
    await log.create(new("g1"))
    before = await tx_of(log, "g1")

    await log.release("beta", "g1", T0 + 10)
    await log.release("beta", "ghost", T0 + 10)

    assert await tx_of(log, "g1") == before


async def test_release_owner_frees_every_unended_lease_of_that_owner_only(log: Log) -> None:
    for gid in ("a1", "a2", "a3"):
        await log.create(new(gid))
    await log.create(new("b1", lease_owner="beta"))
    await log.create(new("a_done"))
    await log.write(change("a_done", status=TxStatus.FAILED, next_attempt_at=None))

    assert await log.release_owner("alpha") == 3

    for gid in ("a1", "a2", "a3"):
        tx = await tx_of(log, gid)
        assert (tx.lease_owner, tx.lease_expires_at) == (None, None)
        assert tx.next_attempt_at == T0  # still due: any coordinator takes it on
    assert (await tx_of(log, "b1")).lease_owner == "beta"
    assert await log.release_owner("alpha") == 0
    claimed = await log.claim("gamma", T0, T0 + LEASE, 10, None)
    assert sorted(c.gid for c in claimed) == ["a1", "a2", "a3"]


# -- operator requests ---------------------------------------------------------------------


async def test_a_request_is_recorded_and_makes_the_transaction_due_now(log: Log) -> None:
    await log.create(free("g1", next_attempt_at=None, stuck="compensate flight: gave up"))

    tx = await log.request("g1", "retry", T0 + 50)

    assert (tx.gid, tx.requested, tx.next_attempt_at) == ("g1", "retry", T0 + 50)
    assert await tx_of(log, "g1") == tx
    assert await log.claim("alpha", T0 + 50, T0 + 80, 10, None) == [Claimed("g1", "retry")]


async def test_a_request_with_a_claim_takes_only_a_lease_no_live_owner_holds(log: Log) -> None:
    await log.create(free("free", next_attempt_at=None))
    await log.create(new("held", lease_expires_at=T0 + LEASE))  # alpha's, live
    await log.create(new("lapsed", lease_expires_at=T0 + 5))  # alpha's, expired at T0 + 5

    claim = ("beta", T0 + 10 + LEASE)
    taken = await log.request("free", "submit", T0 + 10, claim)
    kept = await log.request("held", "submit", T0 + 10, claim)
    lapsed = await log.request("lapsed", "submit", T0 + 10, claim)

    assert (taken.lease_owner, taken.lease_expires_at, taken.requested) == (
        "beta", T0 + 10 + LEASE, "submit"
    )  # fmt: skip
    assert (kept.lease_owner, kept.lease_expires_at, kept.requested) == (
        "alpha",
        T0 + LEASE,
        "submit",
    )
    assert (lapsed.lease_owner, lapsed.lease_expires_at) == ("beta", T0 + 10 + LEASE)
    for tx in (taken, kept, lapsed):
        assert await tx_of(log, tx.gid) == tx
    # what is leased is not claimable; the request still reaches its owner on renewal
    assert await log.claim("gamma", T0 + 10, T0 + 40, 10, None) == []
    assert await log.renew("alpha", ["held"], T0 + 11, T0 + 41) == {"held": "submit"}


async def test_a_request_for_an_unknown_gid_raises_transaction_not_found(log: Log) -> None:
    with pytest.raises(legato.TransactionNotFound):
        await log.request("ghost", "retry", T0)
    assert await log.load("ghost") is None


async def test_a_request_for_an_ended_transaction_raises_illegal_state_change(
    log: Log,
) -> None:
    await log.create(new("g1"))
    await end(log, "g1", T0 + 1)
    before = await tx_of(log, "g1")

    with pytest.raises(legato.IllegalStateChange):
        await log.request("g1", "abort", T0 + 2)

    assert await tx_of(log, "g1") == before


async def test_a_write_that_handles_a_request_clears_exactly_that_request(log: Log) -> None:
    await log.create(new("g1"))
    await log.request("g1", "retry", T0 + 1)

    await log.write(change("g1", at=T0 + 2))
    assert (await tx_of(log, "g1")).requested == "retry"
    await log.write(change("g1", at=T0 + 3, handled="abort"))
    assert (await tx_of(log, "g1")).requested == "retry"
    await log.write(change("g1", at=T0 + 4, handled="retry"))
    assert (await tx_of(log, "g1")).requested is None


async def test_a_request_made_while_the_last_was_being_handled_survives(log: Log) -> None:
    await log.create(new("g1"))
    await log.request("g1", "retry", T0 + 1)
    await log.request("g1", "abort", T0 + 2)

    await log.write(change("g1", at=T0 + 3, handled="retry"))

    assert (await tx_of(log, "g1")).requested == "abort"


# -- list and counts ---------------------------------------------------------------------------


async def make_listing(log: Log) -> None:
    """Six transactions, newest first: f, then d and e created at the same time, c, b, a."""
    await log.create(new("a", created_at=T0 + 1))
    await end(log, "a", T0 + 10, TxStatus.SUCCEEDED)
    await log.create(new("b", created_at=T0 + 2, name="shop"))
    await end(log, "b", T0 + 10, TxStatus.FAILED)
    await log.create(new("c", created_at=T0 + 3, stuck="compensate car: gave up"))
    await log.create(new("d", created_at=T0 + 4, name="shop", status=TxStatus.ABORTING))
    await log.create(new("e", created_at=T0 + 4))
    await log.create(new("f", created_at=T0 + 5, status=TxStatus.PREPARED))


async def gids(log: Log, **query: Any) -> list[str]:
    return [t.gid for t in await log.list(TxQuery(**query))]


async def test_list_returns_newest_first_with_ties_in_gid_order(log: Log) -> None:
    await make_listing(log)
    assert await gids(log) == ["f", "d", "e", "c", "b", "a"]
    listed = await log.list(TxQuery())
    assert listed[0] == await tx_of(log, "f")


async def test_list_filters_by_status(log: Log) -> None:
    await make_listing(log)
    assert await gids(log, status=[TxStatus.SUBMITTED]) == ["e", "c"]
    assert await gids(log, status=[TxStatus.SUCCEEDED, TxStatus.FAILED]) == ["b", "a"]
    assert await gids(log, status=[TxStatus.ABORTING, TxStatus.PREPARED]) == ["f", "d"]


async def test_list_filters_by_mode_and_name(log: Log) -> None:
    await make_listing(log)
    assert await gids(log, mode="saga") == ["f", "d", "e", "c", "b", "a"]
    assert await gids(log, mode="tcc") == []
    assert await gids(log, name="shop") == ["d", "b"]
    assert await gids(log, name="nobody") == []


async def test_list_filters_by_stuck(log: Log) -> None:
    await make_listing(log)
    assert await gids(log, stuck=True) == ["c"]
    assert await gids(log, stuck=False) == ["f", "d", "e", "b", "a"]


async def test_list_filters_by_creation_time_since_inclusive_until_exclusive(
    log: Log,
) -> None:
    await make_listing(log)
    assert await gids(log, since=T0 + 2, until=T0 + 4) == ["c", "b"]
    assert await gids(log, since=T0 + 4) == ["f", "d", "e"]
    assert await gids(log, until=T0 + 2) == ["a"]


async def test_list_pages_with_limit_and_offset(log: Log) -> None:
    await make_listing(log)
    pages = [await gids(log, limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert pages == [["f", "d"], ["e", "c"], ["b", "a"], []]
    assert await gids(log, limit=4, offset=3) == ["c", "b", "a"]


async def test_list_combines_its_filters(log: Log) -> None:
    await make_listing(log)
    assert await gids(log, name="trip", status=[TxStatus.SUBMITTED], since=T0 + 3.5) == ["e"]
    assert await gids(log, name="shop", stuck=False, limit=1, offset=1) == ["b"]


async def test_list_searches_a_part_of_the_gid(log: Log) -> None:
    await make_listing(log)
    await log.create(new("order-42", created_at=T0 + 7))
    await log.create(new("order-420", created_at=T0 + 8))
    assert await gids(log, search="order-42") == ["order-420", "order-42"]
    assert await gids(log, search="der-420") == ["order-420"]
    assert await gids(log, search="%") == []  # a literal part, never a pattern
    assert await gids(log, search="_") == []


async def test_summary_counts_the_unended_and_the_window_and_finds_the_oldest_unfinished(
    log: Log,
) -> None:
    empty = await log.summary(T0)
    assert (empty.counts, empty.stuck, empty.oldest_unfinished_at) == ({}, 0, None)
    assert (empty.started, empty.ended, empty.unfinished) == (0, {}, 0)
    await make_listing(log)  # a and b ended at T0 + 10; c, d, e, f are open

    s = await log.summary(T0 + 3)
    # the ended ones only in the window: counting them all would read the whole log
    assert s.counts == {"prepared": 1, "submitted": 2, "aborting": 1}
    assert (s.stuck, s.unfinished, s.oldest_unfinished_at) == (1, 4, T0 + 3)
    assert (s.since, s.started, s.ended) == (T0 + 3, 4, {"succeeded": 1, "failed": 1})
    later = await log.summary(T0 + 11)
    assert (later.started, later.ended) == (0, {})


async def test_summary_counts_by_name_what_has_been_due_with_no_coordinator_past_the_grace(
    log: Log,
) -> None:
    before = T0 + 100  # now, less the grace
    # due long ago, held by no one: no running coordinator claims these names
    await log.create(free("wf-1", mode=Mode.WORKFLOW, name="book@2", next_attempt_at=T0 + 50))
    await log.create(free("wf-2", mode=Mode.WORKFLOW, name="book@2", next_attempt_at=T0 + 20))
    await log.create(free("saga-1", name="payroll", next_attempt_at=T0 + 99))
    # a lease that expired as long ago counts; one held now does not
    await log.create(new("orphan", name="payroll", lease_expires_at=T0 + 80))
    await log.create(new("held", name="payroll", lease_expires_at=T0 + 1000))
    # due only lately (within the grace), not due at all, or ended: not counted
    await log.create(free("fresh", name="payroll", next_attempt_at=T0 + 150))
    await log.create(free("parked", name="payroll", next_attempt_at=None))
    await log.create(new("done", name="payroll"))
    await end(log, "done", T0 + 5)

    s = await log.summary(T0, unclaimed_before=before)
    assert [(u.mode, u.name, u.count, u.due_since) for u in s.unclaimed] == [
        ("workflow", "book@2", 2, T0 + 20),  # the most first, then by name
        ("saga", "payroll", 2, T0),  # "orphan": due at T0, its lease gone since T0 + 80
    ]
    assert s.unclaimed_total == 4
    assert (await log.summary(T0)).unclaimed == []  # not asked: not counted
    # the same rule, for one row, as `legato tx list` and the dashboard apply it
    rows = {t.gid: t for t in await log.list(TxQuery(limit=20))}
    now = before + UNCLAIMED_GRACE
    waiting = {g for g, t in rows.items() if unclaimed_since(t, now) is not None}
    assert waiting == {"wf-1", "wf-2", "saga-1", "orphan"}


async def test_counts_give_transactions_by_status_plus_unended_stuck(log: Log) -> None:
    assert await log.counts() == {"stuck": 0}
    await make_listing(log)
    await log.create(new("g", created_at=T0 + 6))
    await log.write(
        change("g", status=TxStatus.FAILED, stuck="gave up", next_attempt_at=None)
    )  # ended: no longer counted as stuck

    assert await log.counts() == {
        "prepared": 1,
        "submitted": 2,
        "aborting": 1,
        "succeeded": 1,
        "failed": 2,
        "stuck": 1,
    }


# -- purge ------------------------------------------------------------------------------------


async def test_purge_deletes_only_ended_transactions_older_than_the_cutoff_oldest_first(
    log: Log,
) -> None:
    await log.create(new("open", created_at=T0 - 100))
    for gid, ended in (("old", T0 + 10), ("older", T0 + 5), ("recent", T0 + 30)):
        await log.create(new(gid))
        await end(log, gid, ended)
    await log.create(new("at_cutoff"))
    await end(log, "at_cutoff", T0 + 20)

    assert await log.purge(T0 + 20, 1) == 1
    assert await log.load("older") is None
    assert await log.load("old") is not None
    assert await log.purge(T0 + 20, 10) == 1
    assert await log.purge(T0 + 20, 10) == 0

    for gid in ("old", "older"):
        assert await log.load(gid) is None
        assert await log.events(gid) == []
    for gid in ("open", "at_cutoff", "recent"):
        assert len(await ops_of(log, gid)) == 4
        assert len(await log.events(gid)) >= 2
    assert await log.counts() == {"submitted": 1, "succeeded": 2, "stuck": 0}


async def test_a_purged_gid_keeps_none_of_its_ops_or_events(log: Log) -> None:
    await log.create(new("g1"))
    await end(log, "g1", T0 + 1)
    assert await log.purge(T0 + 2, 10) == 1

    again = new("g1", created_at=T0 + 3)
    again.ops, again.events = again.ops[:1], again.events[:1]
    assert await log.create(again) is None

    assert await ops_of(log, "g1") == again.ops
    assert without_ids(await log.events("g1")) == again.events


# -- payloads ---------------------------------------------------------------------------------

UNICODE = 'Zürich → 東京 🚄 «quotes» "escaped" \\ back\\slash\n\ttab \x00 nul \u2028'
NESTED = {
    "a": [1, -2, 3.25, 1e-300, 2**53, None, True, False, "", [], {}],
    "deep": {"x": {"y": {"z": [{"k": UNICODE}]}}},
    "ключ": "значение",
}


@pytest.mark.parametrize(
    "payload",
    [UNICODE, NESTED, {"blob": "é" * (512 * 1024)}, ["x" * 1024] * 1024],
    ids=["unicode", "nested", "1MB-unicode", "1MB-list"],
)
async def test_payloads_round_trip_unchanged(log: Log, payload: Any) -> None:
    created = new("g1", payload=payload, options={"meta": payload})
    await log.create(created)
    out = dataclasses.replace(created.ops[0], status=OpStatus.SUCCEEDED, output=payload)
    event = EventRecord("g1", T0 + 1, "op_succeeded", "flight", "action", 1, {"out": payload})
    await log.write(change("g1", ops=[out], events=[event]))

    tx, ops = await loaded(log, "g1")
    assert tx.payload == payload
    assert tx.options == {"meta": payload}
    assert ops[0].output == payload
    assert (await log.events("g1"))[-1].detail == {"out": payload}


async def test_a_payload_json_cannot_carry_is_refused_and_nothing_is_written(log: Log) -> None:
    with pytest.raises(legato.PayloadError):
        await log.create(new("g1", payload={"when": object()}))
    with pytest.raises(legato.PayloadError):
        await log.create(new("g2", payload={"ratio": float("nan")}))
    assert await log.load("g1") is None and await log.load("g2") is None

    await log.create(new("g3"))
    before = await log.load("g3")
    op = dataclasses.replace((await ops_of(log, "g3"))[0], output={1, 2})
    with pytest.raises(legato.PayloadError):
        await log.write(change("g3", ops=[op]))
    assert await log.load("g3") == before


# -- branches registered while prepared (TCC) ---------------------------------------------


def prepared(gid: str, **tx: Any) -> NewTransaction:
    """A TCC transaction as begun: prepared, no branches, held by no coordinator."""
    n = new(gid, mode=Mode.TCC, name="wire:tcc", status=TxStatus.PREPARED, **tx)
    return NewTransaction(
        dataclasses.replace(n.tx, lease_owner=None, lease_expires_at=None), [], n.events
    )


def branch(gid: str, b: str, at: float = T0 + 1) -> list[OpRecord]:
    return [
        OpRecord(
            gid, b, op, 0, f"POST http://svc/{b}/{op}", updated_at=at, payload={"url": f"{b}/{op}"}
        )
        for op in (OpName.CONFIRM, OpName.CANCEL)
    ]


async def test_branches_registered_while_prepared_are_kept_in_registration_order(
    log: Log,
) -> None:
    await log.create(prepared("t1"))
    for b in ("02", "01", "03"):
        await log.register("t1", branch("t1", b), T0 + 1)
    await log.register("t1", branch("t1", "01"), T0 + 2)  # the same again: nothing changes
    loaded = await log.load("t1")
    assert loaded is not None
    ops = loaded[1]
    order = [o.branch for o in sorted(ops, key=lambda o: o.seq) if o.op is OpName.CONFIRM]
    assert order == ["02", "01", "03"]
    cancel = next(o for o in ops if o.key == ("01", OpName.CANCEL))
    assert cancel.payload == {"url": "01/cancel"}
    assert cancel.status is OpStatus.PENDING


async def test_a_write_of_an_op_keeps_the_call_it_was_registered_with(log: Log) -> None:
    created = new("t4", mode=Mode.TCC, name="wire:tcc")
    created.ops = branch("t4", "01", T0)
    await log.create(created)
    # the runner writes an op's state without its call: the call stays as registered
    ran = dataclasses.replace(created.ops[0], status=OpStatus.RUNNING, attempts=1, payload=None)
    await log.write(change("t4", ops=[ran]))
    loaded = await log.load("t4")
    assert loaded is not None
    confirm = next(o for o in loaded[1] if o.op is OpName.CONFIRM)
    assert confirm.status is OpStatus.RUNNING
    assert confirm.payload == {"url": "01/confirm"}


async def test_a_branch_registered_again_with_other_calls_is_refused(log: Log) -> None:
    await log.create(prepared("t2"))
    await log.register("t2", branch("t2", "01"), T0 + 1)
    other = branch("t2", "01")
    other[0].target = "POST http://elsewhere/confirm"
    with pytest.raises(legato.GidConflict, match="registered already"):
        await log.register("t2", other, T0 + 2)


async def test_no_branch_joins_a_transaction_that_is_not_prepared_or_not_there(
    log: Log,
) -> None:
    with pytest.raises(legato.TransactionNotFound):
        await log.register("nobody", branch("nobody", "01"), T0)
    await log.create(new("s1"))  # a saga: submitted
    with pytest.raises(legato.IllegalStateChange, match="current status 'submitted'"):
        await log.register("s1", branch("s1", "09"), T0 + 1)
    loaded = await log.load("s1")
    assert loaded is not None and all(o.branch != "09" for o in loaded[1])


async def test_no_branch_joins_once_a_coordinator_has_claimed_the_transaction(log: Log) -> None:
    await log.create(prepared("t3", next_attempt_at=T0))
    assert [c.gid for c in await log.claim("alpha", T0, T0 + LEASE, 10, None)] == ["t3"]
    with pytest.raises(legato.IllegalStateChange, match="too late"):
        await log.register("t3", branch("t3", "01"), T0 + 1)
    # once the claim's lease has expired, the transaction is free again
    await log.register("t3", branch("t3", "01"), T0 + LEASE + 1)


# -- workflows: journal entries added by a write, signals kept ------------------------------


def signal_op(gid: str, branch: str, value: Any, at: float) -> OpRecord:
    return OpRecord(gid, branch, OpName.SIGNAL, 0, branch.split("#")[0], OpStatus.SUCCEEDED,
                    output=value, updated_at=at)  # fmt: skip


async def test_a_write_adds_the_ops_it_brings_with_their_calls(log: Log) -> None:
    await log.create(new("g1", mode=Mode.WORKFLOW, name="trip@1"))
    added = OpRecord("g1", "0001.book", OpName.ACTION, 1, "book", OpStatus.RUNNING, 1, 1,
                     updated_at=T0 + 1, payload={"kind": "step", "digest": "ab"})  # fmt: skip
    undo = OpRecord("g1", "0001.book", OpName.COMPENSATE, 1, "cancel", updated_at=T0 + 1,
                    payload={"fn": "m:cancel", "args": [1]})  # fmt: skip
    await log.write(change("g1", new_ops=[added, undo]))
    ops = {(o.branch, o.op): o for o in await ops_of(log, "g1")}
    assert ops[("0001.book", OpName.ACTION)] == added
    assert ops[("0001.book", OpName.COMPENSATE)].payload == {"fn": "m:cancel", "args": [1]}
    # a later write of the op changes its state and keeps its call
    done = dataclasses.replace(added, status=OpStatus.SUCCEEDED, output={"id": 7}, payload=None)
    await log.write(change("g1", at=T0 + 2, ops=[done]))
    ops = {(o.branch, o.op): o for o in await ops_of(log, "g1")}
    assert ops[("0001.book", OpName.ACTION)].output == {"id": 7}
    assert ops[("0001.book", OpName.ACTION)].payload == {"kind": "step", "digest": "ab"}


async def test_a_write_by_a_lost_owner_adds_no_op(log: Log) -> None:
    await log.create(new("g1", mode=Mode.WORKFLOW, name="trip@1"))
    added = OpRecord("g1", "0001.book", OpName.ACTION, 1, "book", updated_at=T0 + 1)
    with pytest.raises(LeaseLost):
        await log.write(change("g1", owner="beta", new_ops=[added]))
    assert len(await ops_of(log, "g1")) == 4


async def test_a_signal_is_kept_once_and_makes_the_workflow_due_now(log: Log) -> None:
    await log.create(free("g1", mode=Mode.WORKFLOW, name="trip@1", next_attempt_at=T0 + 999))
    tx, kept = await log.signal("g1", signal_op("g1", "go#1", {"ok": True}, T0 + 1), T0 + 1)
    assert kept and tx.next_attempt_at == T0 + 1 and tx.requested == "signal"
    tx, kept = await log.signal("g1", signal_op("g1", "go#1", {"ok": False}, T0 + 2), T0 + 2)
    assert not kept
    signals = [o for o in await ops_of(log, "g1") if o.op is OpName.SIGNAL]
    assert [(o.branch, o.target, o.output) for o in signals] == [("go#1", "go", {"ok": True})]
    assert [e.kind for e in await log.events("g1")][-1] == "signal"
    claimed = await log.claim("beta", T0 + 3, T0 + 3 + LEASE, 10, None)
    assert [(c.gid, c.requested) for c in claimed] == [("g1", "signal")]


async def test_a_signal_leaves_another_pending_request_in_place(log: Log) -> None:
    await log.create(new("g1", mode=Mode.WORKFLOW, name="trip@1"))
    await log.request("g1", "abort:enough", T0 + 1)
    tx, kept = await log.signal("g1", signal_op("g1", "go#1", 1, T0 + 2), T0 + 2)
    assert kept and tx.requested == "abort:enough"


async def test_a_signal_for_what_is_not_a_running_workflow_is_refused_and_kept_nowhere(
    log: Log,
) -> None:
    with pytest.raises(legato.TransactionNotFound):
        await log.signal("nope", signal_op("nope", "go#1", 1, T0), T0)
    await log.create(new("saga"))
    with pytest.raises(legato.IllegalStateChange, match="not a workflow"):
        await log.signal("saga", signal_op("saga", "go#1", 1, T0), T0)
    await log.create(new("done", mode=Mode.WORKFLOW, name="trip@1"))
    await end(log, "done", T0 + 1)
    with pytest.raises(legato.IllegalStateChange, match="ended"):
        await log.signal("done", signal_op("done", "go#1", 1, T0 + 2), T0 + 2)
    for gid in ("saga", "done"):
        assert not [o for o in await ops_of(log, gid) if o.op is OpName.SIGNAL]


async def test_a_release_leaves_the_transaction_due_at_once_if_a_request_came_meanwhile(
    log: Log,
) -> None:
    await log.create(new("g1", mode=Mode.WORKFLOW, name="trip@1"))
    await log.signal("g1", signal_op("g1", "go#1", 1, T0 + 1), T0 + 1)
    # the owner lets it go until later, not having seen the signal: it stays due now
    await log.write(change("g1", at=T0 + 2, next_attempt_at=T0 + 3600, release=True))
    tx = await tx_of(log, "g1")
    assert tx.lease_owner is None and tx.next_attempt_at == T0 + 2
    # a release that answers the request is due when it says
    await log.claim("alpha", T0 + 3, T0 + 3 + LEASE, 10, None)
    await log.write(
        change("g1", at=T0 + 4, next_attempt_at=T0 + 3600, release=True, handled="signal")
    )
    tx = await tx_of(log, "g1")
    assert tx.requested is None and tx.next_attempt_at == T0 + 3600
