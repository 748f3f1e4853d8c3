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
