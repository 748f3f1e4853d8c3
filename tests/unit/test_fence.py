"""The fence's arithmetic (``legato.engine.fence``): when a coordinator whose lease
renewals do not land stops starting ops, on its own clocks."""

from __future__ import annotations

import math

import pytest

from legato.engine.fence import MARGIN_SHARE, fence_at, fence_of_expiry, margin


def test_the_margin_is_a_fifth_of_the_lease() -> None:
    assert MARGIN_SHARE == 0.2
    assert margin(15.0) == pytest.approx(3.0)
    assert margin(1) == pytest.approx(0.2)


def test_the_fence_falls_the_margin_before_the_lease_taken_at_the_calls_start_ends() -> None:
    # a renewal sent at 100.0 (monotonic) gave a 15 s lease: it ends at 115 at the
    # earliest, so no op starts from 112 on
    assert fence_at(100.0, 15.0) == pytest.approx(112.0)
    assert fence_at(0.0, 1.0) == pytest.approx(0.8)


def test_a_later_renewal_moves_the_fence_on_by_as_much() -> None:
    assert fence_at(105.0, 15.0) - fence_at(100.0, 15.0) == pytest.approx(5.0)


def test_renewals_every_third_of_the_lease_keep_the_fence_ahead() -> None:
    # two renewals in a row must fail before it falls: the next is due at lease/3, and
    # the one after at 2 * lease/3, both before lease - margin
    for lease in (1.0, 3.0, 15.0, 3600.0):
        assert fence_at(0.0, lease) > 2 * lease / 3


def test_a_lease_read_from_the_log_is_fenced_on_the_monotonic_clock() -> None:
    # the log says the lease ends at wall 1_000_015; the wall clock reads 1_000_005 while
    # the monotonic clock reads 50: 10 s are left, so the fence is at 50 + 10 - 3
    assert fence_of_expiry(1_000_015.0, 1_000_005.0, 50.0, 15.0) == pytest.approx(57.0)


def test_a_lease_already_past_its_fence_is_fenced_in_the_past() -> None:
    assert fence_of_expiry(1_000_001.0, 1_000_000.0, 50.0, 15.0) == pytest.approx(48.0)


@pytest.mark.parametrize("lease", [0, -1.0, math.nan, math.inf, True, "15"])
def test_a_lease_that_is_not_a_positive_number_of_seconds_is_refused(lease: object) -> None:
    with pytest.raises(ValueError, match="a lease is a positive number of seconds"):
        margin(lease)  # type: ignore[arg-type]
