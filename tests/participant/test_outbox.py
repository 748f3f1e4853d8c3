"""The transactional outbox on SQLite, PostgreSQL and MariaDB, relayed to a real broker
(Redis Streams here; RabbitMQ for the broker that refuses): an event commits with its
business change or not at all, each key's events go out in commit order, a row that
commits late is not skipped, and a broker failure holds a key back instead of
reordering it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest

from legato.brokers import Broker, BrokerError, Delivery, broker_from_url
from legato.participant import outbox
from legato.participant._drivers import NoTransaction
from tests.support.barrier import Db
from tests.support.services import need_service, port_problem


def _db(request: pytest.FixtureRequest) -> Iterator[Db]:
    fixture = {"sqlite": "fresh_sqlite", "postgresql": "fresh_pg", "mysql": "fresh_mariadb"}
    d: Db = request.getfixturevalue(fixture[request.param])
    d.execute("CREATE TABLE orders (id VARCHAR(64) PRIMARY KEY, status VARCHAR(32) NOT NULL)")
    with closing(d.connect()) as conn:
        outbox.create_table(conn)
        outbox.create_table(conn)  # again: changes nothing
    yield d


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    yield from _db(request)


@pytest.fixture(params=["postgresql", "mysql"])
def server_db(request: pytest.FixtureRequest) -> Iterator[Db]:
    """The databases with concurrent writers (SQLite has one writer: no race to order)."""
    yield from _db(request)


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    need_service("Redis", port_problem(6379))
    b = broker_from_url("redis://127.0.0.1:6379/0", redeliver_after=1.0)
    await b.connect()
    b.topic = f"t{uuid.uuid4().hex[:12]}"
    await b.declare(b.topic, "readers")
    try:
        yield b
    finally:
        await b.delete(b.topic)
        await b.close()


def place(d: Db, order: str, topic: str, key: str, *, commit: bool = True) -> str:
    """One business transaction: an order row and its event."""
    with closing(d.connect()) as conn:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO orders VALUES ({d.ph}, {d.ph})", (order, "placed"))
        cur.close()
        mid = outbox.add(conn, topic, key, {"order": order}, headers={"gid": order})
        conn.commit() if commit else conn.rollback()
        return mid


async def read(broker: Broker, topic: str, n: int, timeout: float = 10) -> list[Delivery]:
    sub = await broker.subscribe(topic, "readers", "r1")
    it = aiter(sub)
    got: list[Delivery] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < n:
                d = await anext(it)
                await d.ack()
                got.append(d)
    finally:
        await sub.close()
    return got


RELAYS: list[outbox.Relay] = []


@pytest.fixture(autouse=True)
def _close_relays() -> Iterator[None]:
    yield
    while RELAYS:
        RELAYS.pop().close()


def relay_for(d: Db, broker: Broker) -> outbox.Relay:
    relay = outbox.Relay(d.connect, broker)
    RELAYS.append(relay)
    return relay


def unsent(d: Db) -> int:
    return int(d.rows("SELECT count(*) FROM legato_outbox WHERE sent_at IS NULL")[0][0])


async def test_a_committed_event_is_published_with_its_headers_and_marked_sent(
    db: Db, redis: Any
) -> None:
    mid = place(db, "o1", redis.topic, "o1")
    relay = relay_for(db, redis)

    assert await relay.run_once() == 1
    (d,) = await read(redis, redis.topic, 1)
    assert (d.message.id, d.message.key, d.message.headers) == (mid, "o1", {"gid": "o1"})
    assert json.loads(d.message.body) == {"order": "o1"}
    assert unsent(db) == 0
    assert await relay.run_once() == 0  # nothing twice


async def test_a_rolled_back_business_change_publishes_nothing_and_takes_no_number(
    db: Db, redis: Any
) -> None:
    place(db, "o1", redis.topic, "k", commit=False)
    place(db, "o2", redis.topic, "k")

    assert db.rows("SELECT id FROM orders") == [("o2",)]
    assert db.rows("SELECT seq FROM legato_outbox") == [(1,)]  # no gap where o1 was
    assert await relay_for(db, redis).run_once() == 1


def test_an_autocommit_connection_is_refused_before_anything_is_written(fresh_pg: Db) -> None:
    with closing(fresh_pg.connect()) as conn:
        outbox.create_table(conn)
        conn.commit()
    with psycopg.connect(fresh_pg.url, autocommit=True) as conn:
        with pytest.raises(NoTransaction, match="autocommit"):
            outbox.add(conn, "orders", "k", {"x": 1})
        with pytest.raises(ValueError, match="topic"):
            outbox.add(conn, "bad topic", "k", {"x": 1})
    assert fresh_pg.rows("SELECT count(*) FROM legato_outbox") == [(0,)]


async def test_a_row_that_commits_late_is_published_not_skipped(db: Db, redis: Any) -> None:
    late = db.connect()  # begins first, commits last
    cur = late.cursor()
    cur.execute(f"INSERT INTO orders VALUES ({db.ph}, {db.ph})", ("early-begun", "placed"))
    cur.close()
    if db.dialect == "sqlite":  # one writer: SQLite cannot interleave the two at all
        late.commit()
        outbox_late = place(db, "early-begun-event", redis.topic, "a")
    else:
        outbox_late = outbox.add(late, redis.topic, "a", {"order": "early-begun"})
    place(db, "o2", redis.topic, "b")
    relay = relay_for(db, redis)

    first = await relay.run_once()
    late.commit()
    late.close()
    second = await relay.run_once()

    got = await read(redis, redis.topic, 2)
    assert outbox_late in {d.message.id for d in got}
    assert first + second == 2 and unsent(db) == 0


async def test_one_key_s_events_go_out_in_commit_order_when_writers_race(
    server_db: Db, redis: Any
) -> None:
    db = server_db
    first = db.connect()
    outbox.add(first, redis.topic, "k", {"n": "first"})  # holds the key's row lock
    done = threading.Event()

    def second() -> None:
        with closing(db.connect()) as conn:
            outbox.add(conn, redis.topic, "k", {"n": "second"})  # waits for the first
            conn.commit()
        done.set()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert not done.is_set(), "the second writer did not wait for the key"
    first.commit()
    first.close()
    t.join(10)

    await relay_for(db, redis).run_once()
    got = await read(redis, redis.topic, 2)
    assert [json.loads(d.message.body)["n"] for d in got] == ["first", "second"]


@pytest.fixture
async def rabbit() -> AsyncIterator[Any]:
    need_service("RabbitMQ", port_problem(5672))
    b = broker_from_url("amqp://guest:guest@127.0.0.1:5672/")
    await b.connect()
    b.topic = f"t{uuid.uuid4().hex[:12]}"
    try:
        yield b
    finally:
        await b.delete(b.topic, ["readers"])
        await b.close()


async def test_a_broker_that_refuses_holds_the_key_back_until_it_takes_it(
    fresh_sqlite: Db, rabbit: Any
) -> None:
    d = fresh_sqlite
    d.execute("CREATE TABLE orders (id VARCHAR(64) PRIMARY KEY, status VARCHAR(32) NOT NULL)")
    with closing(d.connect()) as conn:
        outbox.create_table(conn)
    for n in range(3):
        place(d, f"o{n}", rabbit.topic, "k")
    relay = relay_for(d, rabbit)

    # no group declared yet: RabbitMQ will not route the message, and says so
    with pytest.raises(BrokerError):
        await relay.run_once()
    assert unsent(d) == 3

    await rabbit.declare(rabbit.topic, "readers")
    task = asyncio.create_task(relay.run())
    try:
        got = await read(rabbit, rabbit.topic, 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [json.loads(x.message.body)["order"] for x in got] == ["o0", "o1", "o2"]
    assert unsent(d) == 0


async def test_a_redelivered_message_takes_effect_once_through_the_inbox(
    db: Db, redis: Any
) -> None:
    """Outbox -> relay -> broker -> a consumer that commits its effect and dies before its
    ack -> the redelivery finds the inbox row and changes nothing."""
    from legato.participant import create_table, inbox

    db.execute("CREATE TABLE charges (order_id VARCHAR(64) NOT NULL)")
    with closing(db.connect()) as conn:
        create_table(conn)
    place(db, "o1", redis.topic, "o1")
    await relay_for(db, redis).run_once()

    def charge(conn: Any) -> None:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO charges VALUES ({db.ph})", ("o1",))
        cur.close()

    first = await redis.subscribe(redis.topic, "readers", "c1")
    d = await anext(aiter(first))
    with closing(db.connect()) as conn:
        assert inbox.consume(conn, d.message, "payments", charge).ran
    await first.close()  # dies before its ack

    second = await redis.subscribe(redis.topic, "readers", "c2")
    async with asyncio.timeout(10):
        again = await anext(aiter(second))
    assert again.redelivered and again.message.id == d.message.id
    with closing(db.connect()) as conn:
        assert inbox.consume(conn, again.message, "payments", charge).skipped
    await again.ack()
    await second.close()
    assert db.rows("SELECT order_id FROM charges") == [("o1",)]


def test_bad_events_are_refused_before_anything_is_written(db: Db) -> None:
    from legato import PayloadError

    with closing(db.connect()) as conn:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO orders VALUES ({db.ph}, {db.ph})", ("o1", "placed"))
        cur.close()
        with pytest.raises(PayloadError, match="'orders' event for key 'k' is not JSON"):
            outbox.add(conn, "orders", "k", {"when": object()})
        with pytest.raises(PayloadError, match="not JSON"):
            outbox.add(conn, "orders", "k", {"x": float("nan")})
        with pytest.raises(ValueError, match="topic"):
            outbox.add(conn, "orders/eu", "k", {"x": 1})
        with pytest.raises(ValueError, match="key"):
            outbox.add(conn, "orders", "", {"x": 1})
        with pytest.raises(TypeError, match="headers"):
            outbox.add(conn, "orders", "k", {"x": 1}, headers={"gid": 7})  # type: ignore[dict-item]
        conn.rollback()
    assert db.rows("SELECT count(*) FROM legato_outbox") == [(0,)]
    assert db.rows("SELECT count(*) FROM legato_outbox_key") == [(0,)]


async def test_aadd_records_the_event_in_an_asyncio_transaction(
    fresh_pg: Db, fresh_mariadb: Db, redis: Any
) -> None:
    import aiomysql
    import asyncpg

    from legato.participant._drivers import NoTransaction

    for d in (fresh_pg, fresh_mariadb):
        d.execute("CREATE TABLE orders (id VARCHAR(64) PRIMARY KEY, status VARCHAR(32) NOT NULL)")
        with closing(d.connect()) as conn:
            outbox.create_table(conn)
            conn.commit()

    pg = await asyncpg.connect(fresh_pg.url)
    try:
        with pytest.raises(NoTransaction, match="outside a transaction"):
            await outbox.aadd(pg, redis.topic, "a", {"n": 0})
        async with pg.transaction():
            await pg.execute("INSERT INTO orders VALUES ('a1', 'placed')")
            await outbox.aadd(pg, redis.topic, "a", {"n": 1})
    finally:
        await pg.close()
    apg = await psycopg.AsyncConnection.connect(fresh_pg.url)
    async with apg:
        await apg.execute("INSERT INTO orders VALUES ('a2', 'placed')")
        await outbox.aadd(apg, redis.topic, "a", {"n": 2})
        await apg.commit()
    name = fresh_mariadb.url.rsplit("/", 1)[1]
    my = await aiomysql.connect(host="127.0.0.1", user="root", db=name)
    try:
        async with my.cursor() as cur:
            await cur.execute("INSERT INTO orders VALUES ('m1', 'placed')")
        await outbox.aadd(my, redis.topic, "m", {"n": 3})
        await my.commit()
    finally:
        my.close()

    assert fresh_pg.rows("SELECT msg_key, seq FROM legato_outbox ORDER BY id") == [
        ("a", 1),
        ("a", 2),
    ]
    assert fresh_mariadb.rows("SELECT msg_key, seq FROM legato_outbox") == [("m", 1)]
    assert await relay_for(fresh_pg, redis).run_once() == 2
    assert await relay_for(fresh_mariadb, redis).run_once() == 1
    got = await read(redis, redis.topic, 3)
    assert sorted(json.loads(x.message.body)["n"] for x in got) == [1, 2, 3]
