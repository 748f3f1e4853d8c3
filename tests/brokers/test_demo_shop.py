"""``legato demo shop`` on each broker: the choreographed saga ends consistent in every
service's database, with consumers crashing before their acks, and each order is one
flow in Legato's log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from legato.cli import main
from legato.demo.shop.run import BROKERS, run_shop
from tests.support.demo_steps import run_next_commands
from tests.support.services import need_service, port_problem

PORTS = {"rabbitmq": 5672, "nats": 4222, "redis": 6379}


@pytest.mark.parametrize("broker", sorted(BROKERS))
async def test_the_shop_ends_consistent_on_every_broker(broker: str, tmp_path: Path) -> None:
    need_service(broker, port_problem(PORTS[broker]))
    # within the test's own timeout, so that a shop that does not settle is reported by its
    # checks (what is missing), not cut short by pytest-timeout
    report = await run_shop(tmp_path / "shop", broker, n=40, seed=3, crash_rate=0.15, timeout=60)
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed, failed
    assert report.confirmed and report.cancelled  # both paths ran, compensation included
    assert report.crashes and report.redelivered >= report.crashes


def test_legato_demo_shop_prints_the_checks_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_service("redis", port_problem(6379))
    assert (
        main(["demo", "shop", "--broker", "redis", "--orders", "20", "--dir", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "all checks passed" in out and "money adds up" in out


def test_the_shop_ends_with_commands_on_its_own_orders_and_the_default_log(
    tmp_path: Path,
) -> None:
    need_service("redis", port_problem(6379))
    legato_bin = Path(sys.executable).parent / "legato"
    done = subprocess.run(
        [str(legato_bin), "demo", "shop", "--orders", "12"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "LEGATO_LOG"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "legato.db").exists()
    shown = run_next_commands(done.stdout, tmp_path)
    assert shown and all("-order-" in gid for gid in shown)
    assert "<gid>" not in done.stdout
