"""How a transaction reads: its name, its ops' statuses, its events' times, a flow's
hops and lanes, and tables fitted to a terminal (pure, no log)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from legato._model import EventRecord, Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from legato.cli import fit
from legato.cli.timeline import draw
from legato.observe import hops, readable
from legato.observe.timeline import build

T0 = 1_796_443_300.0


def tx(name: str, mode: Mode = Mode.SAGA, **options: object) -> TxRecord:
    return TxRecord(
        gid="g-1",
        mode=mode,
        name=name,
        fingerprint="",
        status=TxStatus.SUCCEEDED,
        created_at=T0,
        updated_at=T0,
        options=dict(options),  # type: ignore[arg-type]
        ended_at=T0 + 1,
    )


def step(name: str, url: str) -> dict[str, object]:
    return {"name": name, "action": {"url": url}}


def test_a_name_given_wins_then_one_made_from_the_steps() -> None:
    spec = {"steps": [step("01", "http://bank/api/debit?x=1"), step("02", "http://bank/credit")]}
    assert readable.title(tx("wire:saga", title="  transfer 42  ", spec=spec)) == "transfer 42"
    assert readable.title(tx("wire:saga", spec=spec)) == "saga: debit, credit"
    named = {"steps": [step("reserve", "http://h/a"), step("charge", "http://h/b")]}
    assert readable.title(tx("wire:saga", spec=named)) == "saga: reserve, charge"
    many = {"steps": [step(f"{i:02d}", f"http://h/s{i}") for i in range(6)]}
    assert readable.title(tx("wire:saga", spec=many)) == "saga: s0, s1, s2 +3"
    assert readable.title(tx("trip")) == "trip"  # a registered saga keeps its name
    assert readable.title(tx("wire:saga")) == "wire:saga"  # nothing to make one from


def test_a_tcc_is_named_after_what_its_tries_call_and_an_old_flow_after_its_first_hop() -> None:
    ops = [
        OpRecord("g-1", "01", OpName.TRY, 0, "POST http://shop/api/reserve"),
        OpRecord("g-1", "01", OpName.CANCEL, 1, "POST http://shop/api/release"),
    ]
    assert readable.title(tx("wire:tcc", Mode.TCC), ops) == "tcc: reserve"
    hop = EventRecord("g-1", T0, "hop", detail={"service": "orders", "event": "order.placed"})
    assert readable.title(tx("wire:flow", Mode.FLOW), (), [hop]) == "flow: order.placed"
    assert readable.title(tx("wire:flow", Mode.FLOW)) == "wire:flow"


def test_pending_ops_of_an_ended_transaction_are_not_needed_or_not_reached() -> None:
    back = OpRecord("g", "a", OpName.COMPENSATE, 1, "")
    forward = OpRecord("g", "b", OpName.ACTION, 2, "")
    assert readable.op_status(True, back) == "not needed"
    assert readable.op_status(True, forward) == "not reached"
    assert readable.op_status(False, back) == "pending"  # a running saga's may yet run
    ran = OpRecord("g", "a", OpName.COMPENSATE, 1, "", status=OpStatus.SUCCEEDED)
    assert readable.op_status(True, ran) == "succeeded"


def test_an_epoch_in_a_detail_reads_as_a_time_and_how_far_off() -> None:
    text = readable.detail_text({"at": T0 + 2.1, "attempt": 3, "why": "x"}, T0)
    assert text == "at=04:01:42.100 UTC (in 2.1 s), attempt=3, why=x"
    assert "2026-12-08" in readable.detail_value("until", T0 + 86400 * 3, T0)  # another day
    assert readable.detail_value("at", 12.5, T0) == "12.5"  # not a moment
    assert readable.relative(T0 - 180, T0) == "3 min ago"


def test_a_flow_s_hops_say_their_outcome_time_and_path() -> None:
    events = [
        EventRecord("g", T0, "hop", detail={"service": "orders", "event": "order.placed"}),
        EventRecord("g", T0 + 0.4, "hop", detail={"service": "pay", "event": "payment.failed"}),
        EventRecord(
            "g",
            T0 + 0.5,
            "hop",
            detail={"service": "pay", "event": "payment.failed", "redelivered": True},
        ),
        EventRecord("g", T0 + 0.6, "hop", detail={"service": "n", "event": "x", "took_ms": 5}),
        EventRecord("g", T0 + 0.7, "hop", detail={"service": "pay", "event": "pay.refunded"}),
        EventRecord(
            "g",
            T0 + 0.8,
            "hop",
            detail={"service": "o", "event": "x.failed", "compensation": True},
        ),
    ]
    got = hops.hops(events, T0)
    assert [(h.outcome, h.compensation) for h in got] == [
        ("ok", False),
        ("failed", False),
        ("skipped", False),
        ("ok", False),
        ("ok", True),  # its event's last word undoes
        ("ok", True),  # said so: a compensation running, not a failure
    ]
    assert [round(h.took, 3) for h in got] == [0.0, 0.4, 0.1, 0.005, 0.1, 0.1]
    assert got[2].detail == {"redelivered": True}


def test_a_flow_s_timeline_has_a_lane_per_service_and_event_compensations_last() -> None:
    events = [
        EventRecord("g", T0 + 0.1 * i, "hop", detail={"service": s, "event": e})
        for i, (s, e) in enumerate(
            [
                ("orders", "order.placed"),
                ("pay", "order.placed"),
                ("pay", "stock.released"),
                ("pay", "order.placed"),
                ("notify", "order.placed"),
            ]
        )
    ]
    events.append(
        EventRecord("g", T0 + 0.4, "status", detail={"from": "submitted", "to": "failed"})
    )
    t = build(tx("wire:flow", Mode.FLOW), [], events, T0 + 5)
    assert [(lane.label, len(lane.bars), lane.backward) for lane in t.lanes] == [
        ("orders: order.placed", 1, False),
        ("pay: order.placed", 2, False),
        ("notify: order.placed", 1, False),
        ("pay: stock.released", 1, True),
    ]
    assert [m.kind for m in t.marks] == ["status"]
    console = Console(record=True, width=80, color_system=None)
    console.print(draw(t, 80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "↩ pay: stock.released" in text and "ok 100.0 ms" in text


def test_a_table_fitted_to_80_columns_cuts_the_least_important_first() -> None:
    columns = (
        fit.Column("gid", keep=True),
        fit.Column("status", keep=True),
        fit.Column("name", least=8, give=1),
        fit.Column("note", least=8, give=0),
    )
    gid = "0193a1b2-7c3d-7e8f-9a0b-1c2d3e4f5a6b"
    rows: list[list[fit.Cell]] = [[gid, Text("succeeded"), "n" * 30, "r" * 40]]
    console = Console(record=True, width=80, color_system=None)
    console.print(fit.table(columns, rows, room=80))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    row = next(line for line in lines if gid in line)
    assert "succeeded" in row and "n" * 12 in row and "…" in row
    assert "r" * 9 not in row  # the note gave first
    wide = Console(record=True, width=1000, color_system=None)
    wide.print(fit.table(columns, rows, room=None))
    assert "r" * 40 in wide.export_text() and "…" not in wide.export_text()


def test_at_80_columns_a_lane_s_name_and_its_outcome_stay_whole() -> None:
    ops = [
        OpRecord("g-1", name, OpName.ACTION, i, "", status=OpStatus.SUCCEEDED)
        for i, name in enumerate(["reserve_the_hotel_room", "charge_the_credit_card"])
    ]
    events = [
        EventRecord("g-1", T0 + 0.01, "op.succeeded", ops[0].branch, "action", 1, {"took_ms": 8}),
        EventRecord("g-1", T0 + 0.02, "op.unknown", ops[1].branch, "action", 1, {"took_ms": 3}),
        EventRecord("g-1", T0 + 0.03, "op.unknown", ops[1].branch, "action", 2, {"took_ms": 3}),
        EventRecord("g-1", T0 + 0.05, "op.failed", ops[1].branch, "action", 3, {"took_ms": 4}),
    ]
    t = build(tx("trip"), ops, events, T0 + 1)
    console = Console(record=True, width=80, color_system=None)
    console.print(draw(t, 80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    card = next(line for line in text.splitlines() if "charge_the_credit_card.action" in line)
    assert card.rstrip().endswith("3 tries: failed 4.0 ms")  # not cut: "card…"


def test_steps_calling_the_same_path_are_counted_not_repeated() -> None:
    spec = {"steps": [step(f"{i:02d}", f"http://127.0.0.1:{8000 + i}/saga") for i in range(3)]}
    assert readable.title(tx("wire:saga", spec=spec)) == "saga: saga x3"
