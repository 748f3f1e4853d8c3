"""Tracing in process: a coordinator given its own tracer provider (an in-memory
exporter), Python steps, the outbox and the inbox."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import legato
from legato import Coordinator, Failure, RetryPolicy, Saga, StepContext
from legato.brokers.base import Message
from legato.observe.tracing import Tracing
from legato.participant import barrier, inbox, outbox

FAST = RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.01)


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p, exporter


def ids(span: ReadableSpan) -> tuple[int, int, int | None]:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.trace_id, ctx.span_id, span.parent.span_id if span.parent else None


async def test_a_saga_is_one_trace_and_each_step_runs_inside_its_attempt_span(
    log_url: str,
) -> None:
    p, exporter = provider()
    seen: dict[str, tuple[int, int]] = {}

    def note(ctx: StepContext) -> None:
        span = trace.get_current_span().get_span_context()
        seen[f"{ctx.step}.{ctx.op}.{ctx.attempt}"] = (span.trace_id, span.span_id)

    def hotel(ctx: StepContext) -> str:  # runs in a step thread
        note(ctx)
        return "room"

    async def car(ctx: StepContext) -> None:  # runs on the loop
        note(ctx)
        if ctx.attempt == 1:
            raise RuntimeError("no answer")  # unknown: retried
        raise Failure("sold out")

    saga = Saga("traced")
    saga.step("hotel", action=hotel, compensate=note)
    saga.step("car", action=car, compensate=note, retry=FAST)
    async with Coordinator(log_url, tracing=Tracing(p)) as c:
        outcome = await (await c.submit(saga, {"x": 1}, gid="t-1")).result(timeout=10)
    assert outcome.status == "failed"

    spans = exporter.get_finished_spans()
    (first,) = [s for s in spans if s.name == "legato saga traced"]
    trace_id, first_id, parent = ids(first)
    assert parent is None  # nobody's child: the submitter was in no span
    assert all(ids(s)[0] == trace_id for s in spans)
    attempts = {
        ".".join(str(s.attributes[k]) for k in ("legato.branch", "legato.op", "legato.attempt")): s
        for s in spans
        if s.attributes and "legato.op" in s.attributes
    }
    assert set(attempts) == {
        "hotel.action.1",
        "car.action.1",
        "car.action.2",
        "car.compensate.1",
        "hotel.compensate.1",
    }
    for key, span in attempts.items():
        assert ids(span)[2] == first_id
        # the step ran with its attempt's span current, in a thread as on the loop
        assert seen[key] == (trace_id, ids(span)[1]), key
    assert attempts["car.action.1"].attributes["legato.outcome"] == "unknown"
    assert attempts["car.action.2"].attributes["legato.outcome"] == "failed"
    assert not attempts["car.action.2"].status.is_ok
    assert attempts["hotel.action.1"].status.is_ok
    (end,) = [s for s in spans if s.name == "legato saga traced failed"]
    assert ids(end)[2] == first_id and end.attributes["legato.status"] == "failed"


async def test_a_submitter_in_a_span_gets_the_transaction_in_its_own_trace(
    log_url: str,
) -> None:
    p, exporter = provider()
    saga = Saga("child")
    saga.step("a", action=lambda ctx: None)
    async with Coordinator(log_url, tracing=Tracing(p)) as c:
        with p.get_tracer("app").start_as_current_span("checkout") as checkout:
            handle = await c.submit(saga, None, gid="t-2")
        await handle.result(timeout=10)
    (first,) = [s for s in exporter.get_finished_spans() if s.name == "legato saga child"]
    assert ids(first)[0] == checkout.get_span_context().trace_id
    assert ids(first)[2] == checkout.get_span_context().span_id


_wf_seen: dict[str, tuple[int, int]] = {}


def _wf_note(what: str) -> None:
    ctx = legato.current_step()
    span = trace.get_current_span().get_span_context()
    _wf_seen[f"{ctx.step}.{ctx.op}.{ctx.attempt}"] = (span.trace_id, span.span_id)
    if what == "flaky" and ctx.attempt == 1:
        raise RuntimeError("no answer")  # unknown: retried
    if what == "sold out":
        raise Failure("sold out")


@legato.workflow("traced_wf")
async def traced_wf(wf: legato.Workflow) -> None:
    await wf.step(_wf_note, "flaky", compensate=legato.call(_wf_note, "undo"), retry=FAST)
    await wf.sleep(1.2)  # long enough to be let go: resumed by a claim, on another runner
    await wf.step(_wf_note, "sold out", compensate=legato.call(_wf_note, "undo"))


async def test_a_workflow_is_one_trace_with_a_span_per_step_attempt_across_being_let_go(
    log_url: str,
) -> None:
    p, exporter = provider()
    async with Coordinator(log_url, tracing=Tracing(p), poll_interval=0.05) as c:
        outcome = await (await c.start_workflow(traced_wf, gid="t-wf")).result(timeout=15)
        kinds = [e.kind for e in await c.events("t-wf")]
    assert outcome.status == "failed" and "suspended" in kinds and "resumed" in kinds

    spans = exporter.get_finished_spans()
    (first,) = [s for s in spans if s.name == "legato workflow traced_wf@1"]
    trace_id, first_id, _ = ids(first)
    assert all(ids(s)[0] == trace_id for s in spans)  # one trace, let go or not
    attempts = {
        ".".join(str(s.attributes[k]) for k in ("legato.branch", "legato.op", "legato.attempt")): s
        for s in spans
        if s.attributes and "legato.op" in s.attributes
    }
    # a span per step attempt, and per compensation; a sleep is no attempt, and a step
    # that failed definitely did not happen, so it is not undone
    assert set(attempts) == {
        "0001._wf_note.action.1",
        "0001._wf_note.action.2",
        "0003._wf_note.action.1",
        "0001._wf_note.compensate.1",
    }
    for key, span in attempts.items():
        assert ids(span)[2] == first_id
        assert span.attributes is not None and span.attributes["legato.mode"] == "workflow"
        assert _wf_seen[key] == (trace_id, ids(span)[1]), key  # the step ran inside it
    assert attempts["0001._wf_note.action.1"].attributes["legato.outcome"] == "unknown"
    assert not attempts["0003._wf_note.action.1"].status.is_ok
    (end,) = [s for s in spans if s.name == "legato workflow traced_wf@1 failed"]
    assert ids(end)[2] == first_id


def test_an_outbox_message_carries_the_trace_and_its_consumer_continues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, exporter = provider()
    # the participant kit makes its spans through the global API: this test's provider
    # is the global one while it runs (and only then)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", p)
    db = sqlite3.connect(tmp_path / "svc.db", isolation_level=None)
    barrier.create_table(db)
    outbox.create_table(db)
    with p.get_tracer("svc").start_as_current_span("pay") as pay:
        db.execute("BEGIN")
        outbox.add(db, "paid", key="o-1", event={"amount": 3})
        db.execute("COMMIT")
    (headers,) = [r[0] for r in db.execute("SELECT headers FROM legato_outbox")]
    sent = json.loads(headers)
    pay_ctx = pay.get_span_context()
    assert sent["traceparent"].split("-")[1:3] == [
        format(pay_ctx.trace_id, "032x"),
        format(pay_ctx.span_id, "016x"),
    ]

    message = Message("paid", "o-1", b"{}", "m-1", sent)
    result = inbox.consume(db, message, "shipping", lambda conn: "shipped")
    again = inbox.consume(db, message, "shipping", lambda conn: "shipped twice")
    assert (result.value, again.skipped) == ("shipped", True)
    spans = [s for s in exporter.get_finished_spans() if s.name == "consume paid shipping"]
    assert len(spans) == 2
    for span in spans:
        assert ids(span)[0] == pay_ctx.trace_id and ids(span)[2] == pay_ctx.span_id
    assert [s.attributes["legato.inbox.skipped"] for s in spans] == [False, True]
