"""The metrics in process: a coordinator's ``Metrics`` hook, rendered as a scrape reads
it. Workflows are counted by mode as every other transaction is, and what no running
coordinator claims is a gauge of its own."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

import legato
from legato import Coordinator, Failure, RetryPolicy
from legato._model import Mode, TxRecord, TxStatus
from legato.log import NewTransaction
from legato.observe.metrics import Metrics

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FAST = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.01)
_tries: dict[str, int] = {}


def scrape(metrics: Metrics) -> Scrape:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def flaky_once(key: str) -> str:
    _tries[key] = _tries.get(key, 0) + 1
    if _tries[key] == 1:
        raise ConnectionError("no answer")  # unknown: retried
    return "ok"


def sold_out(key: str) -> None:
    raise Failure("sold out")


def undo(key: str) -> None:
    pass


@legato.workflow("metered")
async def metered(wf: legato.Workflow, key: str, fail: bool) -> str:
    await wf.step(flaky_once, key, compensate=undo, retry=FAST)
    if fail:
        await wf.step(sold_out, key)
    return "done"


async def test_a_workflow_is_counted_by_mode_as_every_transaction_is(log_url: str) -> None:
    metrics = Metrics()
    async with Coordinator(log_url, hooks=[metrics]) as c:
        ok = await (await c.start_workflow(metered, f"ok-{time.time()}", False)).result(10)
        failed = await (await c.start_workflow(metered, f"no-{time.time()}", True)).result(10)
        await metrics.refresh(c)
    assert ok.succeeded and failed.status is TxStatus.FAILED
    m = scrape(metrics)

    def v(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert v("legato_transactions_started_total", mode="workflow") == 2
    assert v("legato_transactions_ended_total", mode="workflow", outcome="succeeded") == 1
    assert v("legato_transactions_ended_total", mode="workflow", outcome="failed") == 1
    # each step attempt is an op attempt: flaky_once twice (unknown, then ok) in each
    assert v("legato_op_attempts_total", mode="workflow", op="action", outcome="unknown") == 2
    assert v("legato_op_attempts_total", mode="workflow", op="action", outcome="ok") == 2
    assert v("legato_op_attempts_total", mode="workflow", op="action", outcome="failed") == 1
    assert v("legato_op_attempts_total", mode="workflow", op="compensate", outcome="ok") == 1
    assert v("legato_op_retries_total", mode="workflow", op="action") == 2
    assert v("legato_op_duration_seconds_count", mode="workflow", op="compensate") == 1
    assert v("legato_transactions_unfinished", status="submitted") == 0


async def test_what_no_running_coordinator_claims_is_a_gauge_by_mode_and_name(
    log_url: str,
) -> None:
    now = time.time()
    metrics = Metrics()
    async with Coordinator(log_url, hooks=[metrics], poll_interval=0.05) as c:
        # a workflow of a version no coordinator here has, due an hour ago
        for gid, due in (("old-1", now - 3600), ("old-2", now - 120), ("lately", now - 5)):
            tx = TxRecord(
                gid, Mode.WORKFLOW, "trip@1", "f", TxStatus.SUBMITTED,
                created_at=now - 3600, updated_at=now - 3600, next_attempt_at=due,
            )  # fmt: skip
            await c.log.create(NewTransaction(tx, []))
        await metrics.refresh(c)
        first = scrape(metrics)
        await c.force_end("old-1", "failed")
        await c.force_end("old-2", "failed")
        await c.force_end("lately", "failed")
        for _ in range(100):  # a request is carried out by the coordinator that claims it
            if (await c.log.summary(now, unclaimed_before=time.time())).unclaimed == []:
                break
            await asyncio.sleep(0.05)
        await metrics.refresh(c)
        then = scrape(metrics)
    labels = (("mode", "workflow"), ("name", "trip@1"))
    # the one due 5 s ago is within the grace: claimed in time, it would never be shown
    assert first[("legato_transactions_unclaimed", labels)] == 2
    assert then[("legato_transactions_unclaimed", labels)] == 0
