"""The wrong-token throttle: a sliding window per client address."""

from __future__ import annotations

import pytest

from legato._throttle import Throttle, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_max_failures_until_the_window_moves_on() -> None:
    clock = Clock()
    t = Throttle(3, 60.0, clock=clock)
    for _ in range(3):
        assert t.wait("a") == 0
        t.failed("a")
        clock.now += 1
    assert t.wait("a") == pytest.approx(57.0)  # the first failure ages out at 1060
    assert t.wait("b") == 0  # per address
    clock.now = 1060.0
    assert t.wait("a") == 0
    t.failed("a")  # two in the window again, plus this one
    assert t.wait("a") == pytest.approx(1.0)


def test_failures_age_out_and_their_address_is_forgotten() -> None:
    clock = Clock()
    t = Throttle(2, 10.0, clock=clock)
    t.failed("a")
    clock.now += 11
    assert t.wait("a") == 0
    assert t._failures == {}


def test_a_flood_of_addresses_keeps_the_table_bounded() -> None:
    clock = Clock()
    t = Throttle(2, 10.0, max_clients=100, clock=clock)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.001
    assert len(t._failures) <= 100
    t.failed("x")
    t.failed("x")
    assert t.wait("x") > 0  # the newest address is kept


def test_bad_settings_and_retry_after() -> None:
    with pytest.raises(ValueError):
        Throttle(0)
    with pytest.raises(ValueError):
        Throttle(1, 0)
    assert retry_after(0.2) == "1" and retry_after(41.5) == "42"
