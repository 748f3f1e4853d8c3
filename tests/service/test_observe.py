"""Traces, metrics, logs and alerts of ``legato serve`` and the example services, all as
real processes.

Tracing: every process exports over OTLP/HTTP to a collector this test runs (an
in-memory span store behind ``/v1/traces``), so the spans checked are the ones a
real collector would receive.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from legato.demo.http.processes import Child, free_port, service_args
from tests.support.processes import Served, start_serve, stop_serve
from tests.support.scripted_participant import Participant, serve

pytestmark = pytest.mark.timeout(180)

FAST = {"max_attempts": 2, "backoff": 0.05, "jitter": 0}


@dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent: str
    name: str
    attributes: dict[str, Any]
    error: bool


@dataclass
class Collector:
    url: str
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, check: Any, timeout: float = 20) -> list[Span]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if check(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    holder: list[Collector] = []

    async def traces(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        got = []
        for rs in export.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Span(
                            str(resource.get("service.name")),
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            {a.key: _value(a.value) for a in s.attributes},
                            s.status.code == 2,
                        )
                    )
        with holder[0].lock:
            holder[0].spans.extend(got)
        return Response(b"", media_type="application/x-protobuf")

    with serve(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        holder.append(Collector(url))
        yield holder[0]


def otel_env(collector: Collector, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture
def travel_services(collector: Collector, tmp_path: Path) -> Iterator[dict[str, Child]]:
    """The flights and hotels example services, each its own process and database."""
    children: dict[str, Child] = {}
    before = dict(os.environ)
    try:
        for kind in ("flights", "hotels"):
            port = free_port()
            db = f"sqlite:///{tmp_path / kind}.db"
            env = {**os.environ, **otel_env(collector, f"travel-{kind}")}
            args = service_args(kind, db, port, tmp_path / "none.json", [])
            args = args[: args.index("--stock")]  # the default stock (trips of seed 1)
            children[kind] = Child.spawn(kind, args, port, tmp_path / f"{kind}.log", env=env)
        for child in children.values():
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(child.url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert child.process.poll() is None and time.monotonic() < deadline, (
                    child.log_path.read_text()
                )
                time.sleep(0.05)
        yield children
    finally:
        os.environ.clear()
        os.environ.update(before)
        for child in children.values():
            child.stop()


def trip_saga(gid: str, services: dict[str, Child], hotel: str) -> dict[str, Any]:
    from legato.demo.workload import make_trips

    trip = make_trips(1, 1)[0].payload

    def step(name: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = services[kind].url
        return {
            "name": name,
            "action": f"{url}/reserve",
            "compensate": f"{url}/cancel",
            "payload": payload,
            "retry": FAST,
        }

    return {
        "gid": gid,
        "steps": [
            step("flight", "flights", {"flight": trip["flight"]}),
            step("hotel", "hotels", {"hotel": hotel, "nights": trip["nights"]}),
        ],
        "wait": True,
        "wait_timeout": 30,
    }


def test_one_trace_runs_through_the_coordinator_and_both_services(
    collector: Collector, travel_services: dict[str, Child], log_url: str
) -> None:
    from legato.demo.workload import make_trips

    served = start_serve(log_url, env=otel_env(collector, "legato"))
    try:
        ok = httpx.post(
            served.url + "/v1/sagas",
            json=trip_saga("traced-ok", travel_services, make_trips(1, 1)[0].payload["hotel"]),
            timeout=40,
        )
        assert ok.json()["status"] == "succeeded", ok.text
        # no such hotel: the hotel answers 409, the flight is compensated
        bad = httpx.post(
            served.url + "/v1/sagas",
            json=trip_saga("traced-undo", travel_services, "H-nowhere"),
            timeout=40,
        )
        assert bad.json()["status"] == "failed", bad.text
    finally:
        stop_serve(served)

    for gid, attempts in (
        ("traced-ok", {("flight", "action"), ("hotel", "action")}),
        # the failed step is compensated too (it may have done part of its work)
        (
            "traced-undo",
            {
                ("flight", "action"),
                ("hotel", "action"),
                ("hotel", "compensate"),
                ("flight", "compensate"),
            },
        ),
    ):

        def complete(spans: list[Span], gid: str = gid, n: int = len(attempts)) -> bool:
            mine = [s for s in spans if s.attributes.get("legato.gid") == gid]
            services = [s for s in mine if s.service.startswith("travel-")]
            ended = [s for s in mine if "legato.status" in s.attributes]
            return len(services) >= n and bool(ended)

        spans = collector.wait_for(complete)
        begin = [
            s
            for s in spans
            if s.attributes.get("legato.gid") == gid and s.name.startswith("legato saga")
        ]
        assert len(begin) == 2, [s.name for s in spans]  # the first span and the end's
        first = next(s for s in begin if "legato.status" not in s.attributes)
        trace = collector.of_trace(first.trace_id)
        by_id = {s.span_id: s for s in trace}
        # the transaction's first span is the child of the request that submitted it
        assert by_id[first.parent].service == "legato"
        assert by_id[first.parent].name.startswith("POST")

        ops = [s for s in trace if "legato.op" in s.attributes and s.service == "legato"]
        assert {(s.attributes["legato.branch"], s.attributes["legato.op"]) for s in ops} == attempts
        for op in ops:
            assert op.parent == first.span_id, op.name
            assert op.attributes["legato.gid"] == gid
            assert op.attributes["legato.attempt"] == 1
        handled = [s for s in trace if s.service.startswith("travel-")]
        assert len(handled) == len(attempts)
        for server_span in handled:
            parent = by_id[server_span.parent]
            # each service's span continues the very attempt that called it
            assert parent in ops
            assert server_span.attributes["legato.op"] == parent.attributes["legato.op"]
            assert server_span.attributes["legato.branch"] == parent.attributes["legato.branch"]
            kind = "flights" if parent.attributes["legato.branch"] == "flight" else "hotels"
            assert server_span.service == f"travel-{kind}"
        end = next(s for s in begin if "legato.status" in s.attributes)
        assert end.trace_id == first.trace_id and end.parent == first.span_id

    undo = collector.of_trace(
        next(s.trace_id for s in collector.spans if s.attributes.get("legato.gid") == "traced-undo")
    )
    failed = [s for s in undo if s.attributes.get("legato.outcome") == "failed"]
    assert [s.attributes["legato.branch"] for s in failed] == ["hotel"]
    assert failed[0].error
    trace_ids = {
        s.trace_id for s in collector.spans if s.attributes.get("legato.gid") == "traced-ok"
    }
    assert len(trace_ids) == 1


def test_a_restarted_coordinator_continues_the_transactions_trace(
    collector: Collector, participant: Participant, log_url: str
) -> None:
    """The first coordinator dies (SIGKILL) after the first action ran; the second resumes
    the saga, and its spans join the trace kept in the log."""
    crashing = start_serve(
        log_url, env={**otel_env(collector, "legato"), "LEGATO_FAULTS": "after_op.action@1"}
    )
    try:
        steps = [
            {
                "name": name,
                "action": participant.script(f"/{name}", [(200, {"ok": name})]),
                "compensate": participant.script(f"/{name}/undo", [(200, {})]),
                "retry": FAST,
            }
            for name in ("one", "two")
        ]
        with pytest.raises(httpx.HTTPError):
            httpx.post(
                crashing.url + "/v1/sagas",
                json={"gid": "resumed", "steps": steps, "wait": True, "wait_timeout": 20},
                timeout=20,
            )
        crashing.process.wait(10)
    finally:
        stop_serve(crashing)

    import asyncio

    from legato.log import open_log

    async def stored() -> dict[str, str]:
        log = open_log(log_url)
        await log.open()
        try:
            loaded = await log.load("resumed")
            assert loaded is not None
            trace = loaded[0].options["trace"]
            assert isinstance(trace, dict)
            return trace
        finally:
            await log.close()

    trace_id, span_id = asyncio.run(stored())["traceparent"].split("-")[1:3]
    second = start_serve(log_url, env=otel_env(collector, "legato"))
    try:
        deadline = time.monotonic() + 30
        while httpx.get(second.url + "/v1/transactions/resumed").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop_serve(second)

    def resumed(spans: list[Span]) -> bool:
        return any(s.attributes.get("legato.status") == "succeeded" for s in spans)

    collector.wait_for(resumed)
    ops = [s for s in collector.of_trace(trace_id) if "legato.op" in s.attributes]
    # the second coordinator re-ran action one (its outcome was lost) and ran action two
    assert {s.attributes["legato.branch"] for s in ops} >= {"one", "two"}
    assert all(s.parent == span_id for s in ops)
    calls = participant.calls_to("/two")
    assert calls and calls[0].headers["traceparent"].split("-")[1] == trace_id


# -- metrics --------------------------------------------------------------------------


def scrape(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(served.url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_what_ran(participant: Participant, log_url: str) -> None:
    served = start_serve(log_url)
    try:
        ok = [(200, {})]
        for i in range(5):
            body = {
                "gid": f"m-ok-{i}",
                "steps": [
                    {
                        "name": s,
                        "action": participant.script(f"/{s}", ok),
                        "compensate": participant.script(f"/{s}/undo", ok),
                        "retry": FAST,
                    }
                    for s in ("a", "b")
                ],
                "wait": True,
            }
            assert httpx.post(served.url + "/v1/sagas", json=body, timeout=30).status_code == 200
        for i in range(3):
            body = {
                "gid": f"m-fail-{i}",
                "steps": [
                    {
                        "name": "a",
                        "action": participant.script("/a", ok),
                        "compensate": participant.script("/a/undo", ok),
                        "retry": FAST,
                    },
                    {
                        "name": "b",
                        "action": participant.script(f"/b-{i}", [(500, {}), (409, {})]),
                        "compensate": participant.script("/b/undo", ok),
                        "retry": FAST,
                    },
                ],
                "wait": True,
            }
            r = httpx.post(served.url + "/v1/sagas", json=body, timeout=30)
            assert r.json()["status"] == "failed"
        m = scrape(served)
    finally:
        stop_serve(served)

    def v(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert v("legato_transactions_started_total", mode="saga") == 8
    assert v("legato_transactions_ended_total", mode="saga", outcome="succeeded") == 5
    assert v("legato_transactions_ended_total", mode="saga", outcome="failed") == 3
    # 5 x 2 actions, 3 x (a, then b: 500 then 409), 3 compensations of a and of b
    assert v("legato_op_attempts_total", mode="saga", op="action", outcome="ok") == 13
    assert v("legato_op_attempts_total", mode="saga", op="action", outcome="unknown") == 3
    assert v("legato_op_attempts_total", mode="saga", op="action", outcome="failed") == 3
    assert v("legato_op_attempts_total", mode="saga", op="compensate", outcome="ok") == 6
    assert v("legato_op_retries_total", mode="saga", op="action") == 3
    assert v("legato_op_duration_seconds_count", mode="saga", op="action") == 19
    assert v("legato_transactions_unfinished", status="submitted") == 0
    assert v("legato_transactions_stuck") == 0
    assert v("legato_oldest_unfinished_age_seconds") == 0
    assert v("legato_transactions_in_flight") == 0
    assert v("legato_log_batch_size_count") > 0
    assert v("legato_log_batch_seconds_sum") > 0
    assert v("legato_lease_takeovers_total") == 0
    # no per-gid or per-branch label anywhere
    assert not any(k in ("gid", "branch", "branch_id") for (_, labels) in m for k, _ in labels)


def test_the_metrics_of_several_workers_add_up_whichever_one_is_scraped(
    participant: Participant, log_url: str
) -> None:
    served = start_serve(log_url, workers=2)
    try:
        ok = [(200, {})]
        steps = [
            {"name": s, "action": participant.script(f"/{s}", ok), "retry": FAST}
            for s in ("a", "b")
        ]
        for i in range(10):  # a connection each: the two workers share them out
            body = {"gid": f"w-{i}", "steps": steps, "wait": True}
            assert httpx.post(served.url + "/v1/sagas", json=body, timeout=30).status_code == 200
        owners = {httpx.get(served.url + "/health").json()["owner"] for _ in range(20)}
        scrapes = [scrape(served) for _ in range(8)]
    finally:
        stop_serve(served)
    print(f"workers that answered /health: {len(owners)}")
    for m in scrapes:
        assert m[("legato_transactions_started_total", (("mode", "saga"),))] == 10
        ended = ("legato_transactions_ended_total", (("mode", "saga"), ("outcome", "succeeded")))
        assert m[ended] == 10
        ok_labels = (("mode", "saga"), ("op", "action"), ("outcome", "ok"))
        assert m[("legato_op_attempts_total", ok_labels)] == 20
        assert m[("legato_transactions_in_flight", ())] == 0
        assert m[("legato_transactions_unfinished", (("status", "submitted"),))] == 0


def test_metrics_show_stuck_transactions_and_the_oldest_unfinished(
    participant: Participant, log_url: str
) -> None:
    served = start_serve(log_url)
    try:
        body = {
            "gid": "m-stuck",
            "steps": [
                {
                    "name": "a",
                    "action": participant.script("/a", [(200, {})]),
                    "compensate": participant.script("/a/undo", [(500, {})]),
                    "retry": FAST,
                    "compensate_retry": FAST,
                },
                {
                    "name": "b",
                    "action": participant.script("/b", [(409, {})]),
                    "compensate": participant.script("/b/undo", [(200, {})]),
                    "retry": FAST,
                },
            ],
        }
        assert httpx.post(served.url + "/v1/sagas", json=body, timeout=30).status_code < 300
        deadline = time.monotonic() + 20
        while not httpx.get(served.url + "/v1/transactions/m-stuck").json().get("stuck"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        m = scrape(served)
        lines = served.lines()
    finally:
        stop_serve(served)
    assert m[("legato_transactions_stuck", ())] == 1
    assert m[("legato_transactions_became_stuck_total", (("mode", "saga"),))] == 1
    assert m[("legato_transactions_unfinished", (("status", "aborting"),))] == 1
    assert m[("legato_oldest_unfinished_age_seconds", ())] > 0
    # the log line saying so is JSON (stderr is no terminal), with the transaction's fields
    stuck = [json.loads(line) for line in lines.splitlines() if '"stuck"' in line]
    assert stuck and stuck[0]["gid"] == "m-stuck" and stuck[0]["level"] == "ERROR"
    assert len(stuck[0]["trace_id"]) == 32


def test_an_alert_webhook_hears_of_a_compensation_past_its_retry_limit(
    participant: Participant, log_url: str
) -> None:
    hook = participant.script("/alerts", [(200, {})])
    served = start_serve(log_url, env={"LEGATO_ALERT_WEBHOOK": hook})
    try:
        body = {
            "gid": "alerted",
            "steps": [
                {
                    "name": "a",
                    "action": participant.script("/a", [(200, {})]),
                    "compensate": participant.script("/a/undo", [(500, {"message": "db down"})]),
                    "compensate_retry": FAST,
                },
                {"name": "b", "action": participant.script("/b", [(409, {})])},
            ],
        }
        httpx.post(served.url + "/v1/sagas", json=body, timeout=30)
        deadline = time.monotonic() + 20
        while not participant.calls_to("/alerts"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop_serve(served)
    alert = json.loads(participant.calls_to("/alerts")[0].body)
    assert alert["alert"] == "stuck" and alert["gid"] == "alerted"
    assert alert["compensation_exhausted"] is True
    assert alert["ops"] == [
        {"branch": "a", "op": "compensate", "attempts": 2, "error": "HTTP 500: db down"}
    ]
    assert "db down" in alert["reason"]
