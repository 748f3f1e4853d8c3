"""The pure parts of the dashboard: the timeline's layout and the list's filters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from legato._model import EventRecord, Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from legato.dashboard._draw import LABELS, MIN_BAR, RIGHT, WIDTH, draw
from legato.dashboard._filters import MAX_LIMIT, BadFilter, parse
from legato.observe import timeline
from legato.observe.timeline import idle_stretches

T0 = 1_800_000_000.0


def attempt(
    branch: str, op: str, at: float, took_ms: float, kind: str = "op.succeeded"
) -> EventRecord:
    return EventRecord("g", T0 + at, kind, branch, op, 1, {"took_ms": took_ms})


def stuck_then_retried() -> timeline.Timeline:
    """Three steps, the car sold out, the hotel's compensation failing until an operator
    retried it ten minutes later."""
    end = T0 + 600.006
    tx = TxRecord("g", Mode.SAGA, "trip", "f", TxStatus.FAILED, created_at=T0, ended_at=end)
    ops = [
        OpRecord("g", b, OpName(o), i, "POST /x", OpStatus.SUCCEEDED, 1)
        for i, (b, o) in enumerate(
            [
                *[("flight", "action"), ("hotel", "action"), ("car", "action")],
                *[("car", "compensate"), ("hotel", "compensate"), ("flight", "compensate")],
            ]
        )
    ]
    events = [
        attempt("flight", "action", 0.002, 1),
        attempt("hotel", "action", 0.004, 1),
        attempt("car", "action", 0.006, 1, "op.failed"),
        attempt("car", "compensate", 0.008, 1),
        attempt("hotel", "compensate", 0.010, 1, "op.unknown"),
        EventRecord("g", T0 + 0.011, "stuck", detail={"reason": "hotel gave up"}),
        EventRecord("g", T0 + 600.0, "requested", detail={"what": "retry", "by": "dashboard"}),
        attempt("hotel", "compensate", 600.003, 1),
        attempt("flight", "compensate", 600.006, 1),
    ]
    return timeline.build(tx, ops, events, T0 + 601)


def test_a_long_idle_stretch_is_cut_short_and_the_attempts_either_side_stay_wide() -> None:
    d = draw(stuck_then_retried())
    assert [c.label for c in d.cuts] == ["10 min"]
    (cut,) = d.cuts
    before = [b for b in d.bars if b.x < cut.x]
    after = [b for b in d.bars if b.x > cut.x]
    assert len(before) == 5 and len(after) == 2
    # the first burst (11 ms of 17 drawn to scale) spreads over half the width, not a sliver
    assert max(b.x for b in before) - min(b.x for b in before) > 0.4 * (WIDTH - LABELS)
    for b in d.bars:
        assert b.x >= LABELS and b.x + b.width <= WIDTH - RIGHT + 0.01
        assert b.width >= MIN_BAR


def test_bars_say_what_they_are_and_the_compensation_lanes_come_last_in_the_order_they_ran() -> (
    None
):
    d = draw(stuck_then_retried())
    assert [(lane.branch, lane.op) for lane in d.lanes if lane.backward] == [
        ("car", "compensate"),
        ("hotel", "compensate"),
        ("flight", "compensate"),
    ]
    assert d.backward_from is not None
    assert all(lane.y > d.backward_from for lane in d.lanes if lane.backward)
    assert [b.css for b in d.bars if b.op == "action"] == ["bar ok", "bar ok", "bar failed"]
    assert {b.css for b in d.bars if b.op == "compensate"} == {
        "bar backward ok",
        "bar backward unknown",
    }
    assert {m.css for m in d.marks} == {"mark stuck", "mark requested"}


def waited_then_undone() -> timeline.Timeline:
    """A workflow: a flight booked, let go while waiting for an approval that came ten
    minutes later, a hotel sold out, the flight undone."""
    wait = {"kind": "wait", "name": "approval", "digest": "-"}
    ops = [
        OpRecord("g", "0001.flight", OpName.ACTION, 1, "book", OpStatus.SUCCEEDED, 1),
        OpRecord("g", "0001.flight", OpName.COMPENSATE, 1, "cancel", OpStatus.SUCCEEDED, 1),
        OpRecord(
            "g",
            "0002.@wait",
            OpName.ACTION,
            2,
            "",
            OpStatus.SUCCEEDED,
            payload=wait,
            output={"signal": "approval#boss", "value": True},
        ),
        OpRecord("g", "0003.hotel", OpName.ACTION, 3, "book", OpStatus.FAILED, 1),
        OpRecord("g", "approval#boss", OpName.SIGNAL, 0, "approval", OpStatus.SUCCEEDED),
    ]
    events = [
        attempt("0001.flight", "action", 0.002, 1),
        EventRecord("g", T0 + 0.003, "wf.waiting", "0002.@wait", "action"),
        EventRecord("g", T0 + 0.003, "suspended", detail={"until": T0 + 3600}),
        EventRecord(
            "g", T0 + 600.0, "signal", detail={"signal": "approval", "id": "approval#boss"}
        ),
        EventRecord("g", T0 + 600.0, "resumed"),
        EventRecord("g", T0 + 600.001, "wf.signal_taken", "0002.@wait", "action"),
        attempt("0003.hotel", "action", 600.003, 1, "op.failed"),
        EventRecord(
            "g",
            T0 + 600.003,
            "status",
            detail={"from": "submitted", "to": "aborting", "reason": "sold out"},
        ),
        attempt("0001.flight", "compensate", 600.005, 1),
    ]
    end = T0 + 600.005
    tx = TxRecord("g", Mode.WORKFLOW, "trip@1", "1", TxStatus.FAILED, created_at=T0, ended_at=end)
    return timeline.build(tx, ops, events, T0 + 700)


def test_a_workflow_s_wait_is_a_labelled_bar_and_being_let_go_a_lane_above_the_undoing() -> None:
    d = draw(waited_then_undone())
    assert [lane.label for lane in d.lanes] == [
        "0001 step flight",
        '0002 wait for "approval"',
        "0003 step hotel",
        "0001 compensate flight",
    ]
    (wait,) = [b for b in d.bars if b.text is not None]
    assert (wait.css, wait.text) == ("bar wait signalled", '"approval": signal')
    (cut,) = d.cuts  # the ten minutes' wait, drawn short: the wait bar spans it
    assert wait.x <= cut.x and wait.x + wait.width > cut.x + cut.width
    (let_go,) = d.let_go
    assert "let go for 10 min" in let_go.title and "then resumed" in let_go.title
    assert d.let_go_y is not None and d.backward_from is not None
    forward = [lane.y for lane in d.lanes if not lane.backward]
    assert max(forward) < d.let_go_y < d.backward_from  # with the forward path
    assert "mark signal" in {m.css for m in d.marks}
    assert d.waits and d.height >= d.backward_from + 24


def test_ticks_are_round_increasing_and_spaced() -> None:
    d = draw(stuck_then_retried())
    xs = [t.x for t in d.ticks]
    assert xs == sorted(xs) and len(xs) >= 3
    assert all(b - a >= 56 for a, b in itertools.pairwise(xs))
    assert [t.label for t in d.ticks] == ["0", "+5 ms", "+10 ms", "08:10:00.000", "+5 ms"]
    (cut,) = d.cuts
    assert d.ticks[3].x == pytest.approx(cut.x + cut.width)  # after a cut: its clock time


def test_short_pauses_are_drawn_to_scale() -> None:
    assert idle_stretches(0, 3, [(0, 0.5), (1.2, 3)]) == []  # 0.7 s: under a second
    assert idle_stretches(0, 10, [(0, 0.5), (9, 10)]) == [(0.5, 9)]
    # cutting the longest shows up the next: 5 s is long beside the rest
    assert idle_stretches(0, 600, [(0, 0.1), (5, 5.1), (600, 600)]) == [(0.1, 5), (5.1, 600)]


def test_filters_are_read_from_the_query_string() -> None:
    f = parse(
        {"status": ["failed", "succeeded", ""], "mode": ["saga"], "q": [" trip "], "since": ["1h"]},
        now=T0,
    )
    q = f.query()
    assert list(q.status) == [TxStatus.FAILED, TxStatus.SUCCEEDED]
    assert (q.mode, q.search, q.since, q.limit, q.offset) == ("saga", "trip", T0 - 3600, 50, 0)
    utc = datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert parse({"until": ["2027-01-15T08:00"]}).until_at == utc
    assert parse({"until": ["2027-01-15T09:00+01:00"]}).until_at == utc
    back = parse({k: [v] for k, v in [("status", "failed"), ("limit", "2")]})
    assert back.link(4) == "?status=failed&limit=2&offset=4"
    assert parse({}).link(0) == "?"


@pytest.mark.parametrize(
    "params",
    [
        {"status": ["done"]},
        {"mode": ["sagas"]},
        {"limit": [str(MAX_LIMIT + 1)]},
        {"limit": ["0"]},
        {"offset": ["-5"]},
        {"since": ["last tuesday"]},
    ],
)
def test_bad_filters_are_refused(params: dict[str, list[str]]) -> None:
    with pytest.raises(BadFilter, match=next(iter(params))):
        parse(params)
