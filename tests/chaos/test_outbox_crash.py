"""The outbox under SIGKILL and a broker restart, with real processes: a publishing service
(orders + outbox rows, in its own PostgreSQL database), ``legato relay``, and a
consumer (payments through the inbox, in its own SQLite database), over a real broker.
The broker restart happens on a throwaway RabbitMQ node, never on the shared one.

Each test ends by reading both databases: every committed order has exactly one
payment, and nothing else does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from legato._dburl import connect
from legato.brokers import broker_from_url
from legato.participant import outbox
from tests.support.processes import REPOSITORY
from tests.support.servers import RabbitServer, rabbit_problem
from tests.support.services import need_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WORKER = "tests.chaos.outbox_worker"
BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379/0",
}


class Flow:
    def __init__(self, service_db: str, consumer_db: str, broker: str, tmp: Path) -> None:
        self.service_db, self.consumer_db, self.broker = service_db, consumer_db, broker
        self.topic = f"t{uuid.uuid4().hex[:12]}"
        self.tmp = tmp
        self.relays: list[subprocess.Popen[bytes]] = []

    def worker(self, *args: str, faults: str = "", timeout: float = 90) -> int:
        env = {**os.environ, "LEGATO_FAULTS": faults}
        cmd = [sys.executable, "-m", WORKER, *args, "--topic", self.topic]
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPOSITORY
        )
        if proc.returncode not in (0, -9):
            sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        return proc.returncode

    def publish(self, n: int, start: int = 0, faults: str = "") -> int:
        return self.worker(
            "publish", "--db", self.service_db, "--n", str(n), "--start", str(start), faults=faults
        )

    def consume(self, n: int, faults: str = "") -> int:
        return self.worker(
            "consume", "--db", self.consumer_db, "--broker", self.broker, "--n", str(n),
            faults=faults,
        )  # fmt: skip

    def relay(self, faults: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, "LEGATO_FAULTS": faults}
        cmd = [sys.executable, "-m", "legato.cli", "relay", "--db", self.service_db]
        cmd += ["--broker", self.broker, "--poll-interval", "0.05"]
        with (self.tmp / f"relay-{len(self.relays)}.log").open(
            "ab"
        ) as log:  # the child's copy stays
            p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.relays.append(p)
        return p

    def rows(self, db: str, sql: str) -> list[Any]:
        conn = connect(db)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return [r[0] for r in cur.fetchall()]
        finally:
            conn.close()

    def unsent(self) -> int:
        return int(
            self.rows(self.service_db, "SELECT count(*) FROM legato_outbox WHERE sent_at IS NULL")[
                0
            ]
        )

    def check(self) -> int:
        orders = sorted(self.rows(self.service_db, "SELECT id FROM orders"))
        payments = self.rows(self.consumer_db, "SELECT order_id FROM payments")
        assert sorted(payments) == orders, "an order lost its payment, or was paid twice"
        return len(orders)

    def stop(self) -> None:
        for p in self.relays:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def _broker_up(url: str) -> str | None:
    async def probe() -> None:
        b = broker_from_url(url)
        await b.connect()
        await b.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


@pytest.fixture(params=sorted(BROKERS))
def flow(request: pytest.FixtureRequest, empty_pg_database: str, tmp_path: Path) -> Iterator[Flow]:
    url = BROKERS[request.param]
    need_service(request.param, _broker_up(url))
    with psycopg.connect(empty_pg_database, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id text PRIMARY KEY)")
        outbox.create_table(c)
    consumer_db = f"sqlite:///{tmp_path / 'payments.db'}"
    conn = connect(consumer_db)
    conn.execute("CREATE TABLE payments (order_id TEXT NOT NULL)")
    conn.close()
    f = Flow(empty_pg_database, consumer_db, url, tmp_path)

    async def declare() -> None:  # the consumer's group exists before anything is published
        # (JetStream fixes a group's redelivery delay when it is made: 1 s, as the consumer's)
        b = broker_from_url(url, **({} if url.startswith("amqp") else {"redeliver_after": 1.0}))
        await b.connect()
        await b.declare(f.topic, "payments")
        await b.close()

    asyncio.run(declare())
    try:
        yield f
    finally:
        f.stop()

        async def drop() -> None:
            b = broker_from_url(url)
            await b.connect()
            await b.delete(f.topic, ["payments"])
            await b.close()

        asyncio.run(drop())


def wait_sent(f: Flow, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while f.unsent():
        assert time.monotonic() < deadline, f"{f.unsent()} rows still unsent"
        time.sleep(0.1)


def test_a_relay_killed_after_publishing_before_marking_sent_leaves_one_effect(
    flow: Flow,
) -> None:
    assert flow.publish(30) == 0
    relay = flow.relay(faults="outbox.after_publish@7")
    assert relay.wait(60) == -9, "the relay did not reach its fault point"
    assert flow.unsent() == 30  # published up to 7, marked none of them
    flow.relay()  # restarted: publishes them all, the first 7 again
    wait_sent(flow)
    assert flow.consume(30) == 0
    assert flow.check() == 30


def test_a_publisher_killed_right_after_its_commit_loses_no_event(flow: Flow) -> None:
    assert flow.publish(20, faults="publisher.after_commit@5") == -9
    flow.relay()
    wait_sent(flow)
    assert flow.consume(5) == 0
    assert flow.check() == 5  # the five committed orders, each paid once


def test_a_consumer_killed_before_its_ack_applies_each_event_once(flow: Flow) -> None:
    assert flow.publish(15) == 0
    flow.relay()
    wait_sent(flow)
    assert flow.consume(15, faults="consumer.before_ack@6") == -9
    assert flow.consume(15) == 0  # the sixth comes again: the inbox skips it
    assert flow.check() == 15


def test_a_rabbitmq_restart_mid_flow_loses_nothing(empty_pg_database: str, tmp_path: Path) -> None:
    # a node of the test's own, on free ports: the shared RabbitMQ is never stopped
    need_service("RabbitMQ's server programs, for a throwaway node", rabbit_problem())
    with psycopg.connect(empty_pg_database, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id text PRIMARY KEY)")
        outbox.create_table(c)
    consumer_db = f"sqlite:///{tmp_path / 'payments.db'}"
    conn = connect(consumer_db)
    conn.execute("CREATE TABLE payments (order_id TEXT NOT NULL)")
    conn.close()
    with RabbitServer() as rabbit:
        f = Flow(empty_pg_database, consumer_db, rabbit.url, tmp_path)

        async def declare() -> None:
            b = broker_from_url(rabbit.url)
            await b.connect()
            await b.declare(f.topic, "payments")
            await b.close()

        asyncio.run(declare())
        try:
            assert f.publish(10) == 0
            f.relay()
            wait_sent(f)
            rabbit.stop()
            try:
                assert f.publish(10, start=10) == 0  # committed while the broker is down
                time.sleep(1.0)
                assert f.unsent() == 10, "nothing can be sent while RabbitMQ is down"
            finally:
                rabbit.start()
            wait_sent(f, timeout=90)  # the relay reconnects and sends the rest
            assert f.consume(20) == 0
            assert f.check() == 20
        finally:
            f.stop()
