"""The timeline builder: attempts as bars, from the log's records alone."""

from __future__ import annotations

from legato._model import EventRecord, Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from legato.observe.timeline import build

T0 = 1_000.0


def tx(**kw: object) -> TxRecord:
    fields: dict[str, object] = {
        "gid": "g",
        "mode": Mode.SAGA,
        "name": "trip",
        "fingerprint": "f",
        "status": TxStatus.FAILED,
        "created_at": T0,
        "ended_at": T0 + 2,
    }
    fields.update(kw)
    return TxRecord(**fields)  # type: ignore[arg-type]


def op(branch: str, name: OpName, seq: int, status: OpStatus, **kw: object) -> OpRecord:
    return OpRecord("g", branch, name, seq, "t", status, **kw)  # type: ignore[arg-type]


def ev(at: float, kind: str, branch: str | None = None, o: str | None = None, **detail: object):
    return EventRecord("g", at, kind, branch, o, 1 if branch else None, dict(detail))


def test_attempts_become_bars_ending_at_their_event_and_starting_took_ms_before() -> None:
    ops = [
        op("hotel", OpName.ACTION, 0, OpStatus.SUCCEEDED, attempts=2),
        op("hotel", OpName.COMPENSATE, 1, OpStatus.SUCCEEDED),
        op("car", OpName.ACTION, 2, OpStatus.FAILED),
        op("car", OpName.COMPENSATE, 3, OpStatus.SUCCEEDED),
        op("pay", OpName.ACTION, 4, OpStatus.PENDING),
    ]
    events = [
        ev(T0, "submitted"),
        ev(T0 + 0.1, "op.unknown", "hotel", "action", took_ms=100.0, error="timeout"),
        ev(T0 + 0.5, "op.succeeded", "hotel", "action", took_ms=200.0),
        ev(T0 + 0.6, "op.failed", "car", "action", took_ms=50.0, error="sold out"),
        ev(T0 + 0.6, "op.failed", "car", "action", took_ms=50.0, ignored="late"),
        ev(T0 + 0.6, "status", **{"from": "submitted", "to": "aborting", "reason": "car"}),
        ev(T0 + 0.9, "op.succeeded", "car", "compensate", took_ms=100.0),
        ev(T0 + 1.5, "op.succeeded", "hotel", "compensate", took_ms=300.0),
        ev(T0 + 1.6, "requested", what="retry", by="dashboard"),
    ]
    t = build(tx(), ops, events, now=T0 + 10)

    assert [(lane.branch, lane.op) for lane in t.lanes] == [
        ("hotel", "action"),
        ("car", "action"),
        ("car", "compensate"),  # compensations in the order they ran
        ("hotel", "compensate"),
    ]
    hotel = t.lanes[0].bars
    assert [(b.outcome, b.error) for b in hotel] == [("unknown", "timeout"), ("ok", None)]
    assert abs(hotel[0].start - T0) < 1e-9 and abs(hotel[1].start - (T0 + 0.3)) < 1e-9
    assert len(t.lanes[1].bars) == 1  # the ignored repeat is not drawn
    assert t.lanes[2].backward and not t.lanes[0].backward
    assert (t.start, t.end) == (T0, T0 + 2)
    assert t.position(T0 + 1) == 0.5
    assert [m.label for m in t.marks] == [
        "submitted",
        "submitted -> aborting: car",
        "retry requested by dashboard",
    ]


def test_a_running_attempt_runs_until_now() -> None:
    ops = [op("a", OpName.ACTION, 0, OpStatus.RUNNING, attempts=1, updated_at=T0 + 1)]
    t = build(tx(status=TxStatus.SUBMITTED, ended_at=None), ops, [], now=T0 + 3)
    (bar,) = t.lanes[0].bars
    assert (bar.outcome, bar.start, bar.end) == ("running", T0 + 1, T0 + 3)
    assert t.end == T0 + 3


def test_the_terminal_timeline_cuts_a_long_idle_stretch_short_as_the_dashboard_does() -> None:
    from rich.console import Console

    from legato.cli.timeline import WIDTH, draw

    ops = [op("pay", OpName.ACTION, 0, OpStatus.SUCCEEDED, attempts=2)]
    events = [
        ev(T0, "submitted"),
        ev(T0 + 0.2, "op.unknown", "pay", "action", took_ms=200.0, error="timeout"),
        # retried ten minutes later (a long backoff): drawn linearly, both attempts
        # would be one cell each at either end of the axis
        ev(T0 + 600.2, "op.succeeded", "pay", "action", took_ms=200.0),
    ]
    t = build(tx(status=TxStatus.SUCCEEDED, ended_at=T0 + 600.2), ops, events, now=T0 + 700)
    console = Console(record=True, width=160, color_system=None)
    console.print(draw(t))
    text = console.export_text()
    assert "cut short: 10.0 min" in text
    lane = next(line for line in text.splitlines() if "pay.action" in line)
    bar = lane[lane.index("pay.action") + len("pay.action") :][: WIDTH + 4]
    assert bar.count("█") > WIDTH // 2  # the two attempts fill the axis, bar the cut
    assert "┆" in bar and "✗" in bar  # the cut, and the first attempt's failure


# -- workflows ------------------------------------------------------------------------------


def wf_op(
    branch: str,
    status: OpStatus,
    op: OpName = OpName.ACTION,
    *,
    kind: str | None = None,
    name: str | None = None,
    digest: str = "-",
    **kw: object,
) -> OpRecord:
    """A workflow's op, with the payload its driver journals when ``kind`` is given."""
    head = branch.partition(".")[0]
    seq = int(head) if head.isdigit() else 0
    if kind is not None:
        kw["payload"] = {"kind": kind, "name": name or kind, "digest": digest}
    return OpRecord("g", branch, op, seq, "t", status, **kw)  # type: ignore[arg-type]


def wf_tx(**kw: object) -> TxRecord:
    return tx(mode=Mode.WORKFLOW, name="trip@1", **kw)


def test_a_workflow_s_waits_are_bars_from_start_to_end_saying_how_each_ended() -> None:
    signal = {"signal": "approval#boss", "value": True}
    ops = [
        wf_op("0001.reserve", OpStatus.SUCCEEDED, attempts=1, kind="step", name="reserve"),
        wf_op("0001.reserve", OpStatus.SUCCEEDED, OpName.COMPENSATE, attempts=1),
        wf_op("0002.@wait", OpStatus.SUCCEEDED, output=signal, kind="wait", name="approval"),
        wf_op("0003.@sleep", OpStatus.SUCCEEDED, output={"timeout": True}),
        wf_op("0004.@wait", OpStatus.SUCCEEDED, output={"timeout": True}, kind="wait", name="ok"),
        wf_op("0005.@wait", OpStatus.RETRY_WAIT, next_at=T0 + 99, kind="wait", name="go"),
        wf_op("approval#boss", OpStatus.SUCCEEDED, OpName.SIGNAL, output=True),
    ]
    events = [
        ev(T0 + 0.1, "op.succeeded", "0001.reserve", "action", took_ms=100.0),
        ev(T0 + 0.2, "wf.waiting", "0002.@wait", "action"),
        ev(T0 + 0.2, "suspended", until=T0 + 30),
        ev(T0 + 5.0, "signal", signal="approval", id="approval#boss", by="cli"),
        ev(T0 + 5.0, "resumed"),
        ev(T0 + 5.0, "op.retry_due", "0002.@wait", "action", ignored="stale wake-up"),
        ev(T0 + 5.1, "wf.signal_taken", "0002.@wait", "action"),
        ev(T0 + 5.1, "wf.waiting", "0003.@sleep", "action"),
        ev(T0 + 7.1, "op.retry_due", "0003.@sleep", "action"),
        ev(T0 + 7.1, "wf.waiting", "0004.@wait", "action"),
        ev(T0 + 8.1, "op.retry_due", "0004.@wait", "action"),
        ev(T0 + 8.1, "wf.waiting", "0005.@wait", "action"),
        ev(T0 + 8.2, "status", **{"from": "submitted", "to": "aborting", "reason": "abort"}),
        ev(T0 + 8.3, "op.succeeded", "0001.reserve", "compensate", took_ms=100.0),
    ]
    t = build(wf_tx(ended_at=T0 + 8.3), ops, events, now=T0 + 60)

    waits = {lane.label: lane.bars[0] for lane in t.lanes if lane.bars and lane.bars[0].wait}
    assert [(b.start, b.end, b.outcome, b.label) for b in waits.values()] == [
        (T0 + 0.2, T0 + 5.1, "signalled", '"approval": signal'),
        (T0 + 5.1, T0 + 7.1, "asleep", "asleep"),
        (T0 + 7.1, T0 + 8.1, "timed_out", '"ok": timed out'),
        (T0 + 8.1, T0 + 8.2, "waiting", '"go": no signal'),  # until the rollback began
    ]
    assert list(waits) == [
        '0002 wait for "approval"',
        "0003 sleep",
        '0004 wait for "ok"',
        '0005 wait for "go"',
    ]
    # a step is labelled by its journal; the signal is a mark, not a lane
    assert t.lanes[0].label == "0001 step reserve"
    assert t.lanes[-1].backward and t.lanes[-1].label == "0001 compensate reserve"
    assert not [lane for lane in t.lanes if lane.op == "signal"]
    assert [(g.start, g.end, g.back) for g in t.let_go] == [(T0 + 0.2, T0 + 5.0, True)]
    assert [(m.kind, m.label) for m in t.marks if m.kind == "signal"] == [
        ("signal", 'signal "approval" arrived (approval#boss, by cli)')
    ]
    # the waits do not keep the axis from cutting their long middles short
    assert t.idle() == [(T0 + 0.2, T0 + 5.0), (T0 + 5.1, T0 + 7.1)]


def test_a_workflow_still_waiting_runs_until_now_and_its_recorded_values_are_marks() -> None:
    ops = [
        wf_op("0001.@now", OpStatus.SUCCEEDED, output=T0 + 0.5, kind="now"),
        wf_op("0002.@pivot", OpStatus.SUCCEEDED, output=True, kind="pivot"),
        wf_op(
            "0003.@wait",
            OpStatus.SUCCEEDED,
            output={"signal": "go#1", "value": 7},
            kind="wait",
            name="go",
        ),
        wf_op("0004.@undo", OpStatus.SUCCEEDED, kind="undo", digest="1"),
        wf_op("0005.@sleep", OpStatus.RETRY_WAIT, next_at=T0 + 3600, kind="sleep"),
    ]
    events = [
        ev(T0 + 0.5, "wf.recorded", "0001.@now", "action"),
        ev(T0 + 0.6, "wf.recorded", "0002.@pivot", "action"),
        ev(T0 + 0.7, "wf.recorded", "0003.@wait", "action"),  # a signal kept before the wait
        ev(T0 + 0.8, "wf.compensate_since", "0004.@undo", "action"),
        ev(T0 + 0.9, "wf.waiting", "0005.@sleep", "action"),
        ev(T0 + 0.9, "suspended", until=T0 + 3600),
    ]
    t = build(wf_tx(status=TxStatus.SUBMITTED, ended_at=None), ops, events, now=T0 + 100)
    assert [lane.label for lane in t.lanes] == ["0005 sleep"]  # the rest were instants
    (sleep,) = t.lanes[0].bars
    assert (sleep.start, sleep.end, sleep.outcome) == (T0 + 0.9, T0 + 100, "asleep")
    assert t.lanes[0].status == "asleep"
    assert [(g.start, g.end, g.back) for g in t.let_go] == [(T0 + 0.9, T0 + 100, False)]
    assert [(m.kind, m.label) for m in t.marks] == [
        ("recorded", "0001 time, recorded = 1970-01-01 00:16:40.500 UTC"),
        ("pivot", "0002 pivot: forward only from here"),
        ("recorded", '0003 wait for "go": a kept signal, taken at once'),
        ("undo", "0004 compensate since position 1"),
    ]


def test_the_terminal_draws_a_wait_its_signal_and_the_stretch_let_go() -> None:
    from rich.console import Console

    from legato.cli.timeline import draw

    ops = [
        wf_op("0001.pay", OpStatus.SUCCEEDED, attempts=1, kind="step", name="pay"),
        wf_op(
            "0002.@wait",
            OpStatus.SUCCEEDED,
            output={"signal": "ok#1", "value": 1},
            kind="wait",
            name="ok",
        ),
    ]
    events = [
        ev(T0 + 0.2, "op.succeeded", "0001.pay", "action", took_ms=200.0),
        ev(T0 + 0.2, "wf.waiting", "0002.@wait", "action"),
        ev(T0 + 0.2, "suspended", until=T0 + 9999),
        ev(T0 + 600.0, "signal", signal="ok", id="ok#1"),
        ev(T0 + 600.0, "resumed"),
        ev(T0 + 600.1, "wf.signal_taken", "0002.@wait", "action"),
    ]
    t = build(wf_tx(status=TxStatus.SUCCEEDED, ended_at=T0 + 600.2), ops, events, T0 + 700)
    console = Console(record=True, width=160, color_system=None)
    console.print(draw(t))
    text = console.export_text()
    assert "cut short: 10.0 min" in text  # ten minutes waiting, drawn short
    wait = next(line for line in text.splitlines() if 'wait for "ok"' in line)
    assert "░" in wait and "┆" in wait and "◆" in wait and '"ok": signal 10.0 min' in wait
    let_go = next(line for line in text.splitlines() if "let go (no task held)" in line)
    assert "─" in let_go and "10.0 min" in let_go
    assert 'signal "ok" arrived (ok#1)' in text
