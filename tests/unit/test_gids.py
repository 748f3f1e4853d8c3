"""The gids Legato makes: UUIDv7s, so that a gid made later sorts later and lands at the end
of every index that keys rows by gid (the log's, a participant's barrier)."""

from __future__ import annotations

import time
import uuid

from legato import Coordinator, Saga
from legato._bounds import check_gid, make_gid


def test_a_new_gid_is_a_uuid7_in_32_hex_digits_and_a_valid_gid() -> None:
    gid = make_gid()
    as_uuid = uuid.UUID(hex=gid)
    assert (len(gid), as_uuid.version, as_uuid.variant) == (32, 7, uuid.RFC_4122)
    assert check_gid(gid) == gid
    assert abs(int(gid[:12], 16) / 1000 - time.time()) < 5  # its first 48 bits: the time in ms


def test_gids_made_later_sort_later_and_never_repeat() -> None:
    first = [make_gid() for _ in range(1000)]
    time.sleep(0.002)
    later = make_gid()
    assert all(g < later for g in first)
    assert len(set(first)) == len(first)


async def test_a_saga_submitted_without_a_gid_gets_one_made_so() -> None:
    saga = Saga("trip").step("flight", action=lambda ctx: None)
    async with Coordinator("memory://") as c:
        before = make_gid()
        handle = await c.submit(saga, {})
        assert (await handle.result(timeout=10)).succeeded
    assert uuid.UUID(hex=handle.gid).version == 7
    assert handle.gid[:12] >= before[:12]  # made since (within a millisecond, in any order)
