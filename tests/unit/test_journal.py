"""A workflow's journal as the ops tables show it: each entry's kind in words, what it
came to, and the signals it has not taken (pure, from the log's records)."""

from __future__ import annotations

from legato._model import Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from legato.observe import journal

T0 = 1_800_000_000.0


def op(branch: str, status: OpStatus, o: OpName = OpName.ACTION, **kw: object) -> OpRecord:
    head = branch.partition(".")[0]
    seq = int(head) if head.isdigit() else 0
    target = str(kw.pop("target", "t"))
    return OpRecord("g", branch, o, seq, target, status, updated_at=T0, **kw)  # type: ignore[arg-type]


def entry(kind: str, name: str | None = None, digest: str = "-") -> dict[str, str]:
    return {"kind": kind, "name": name or kind, "digest": digest}


def rows(tx: TxRecord, ops: list[OpRecord]) -> list[tuple[str, str, str, str]]:
    return [(e.position, e.text, e.status, e.detail) for e in journal.entries(tx, ops)]


def test_each_entry_reads_as_what_it_is_in_journal_order_then_the_result_then_the_signals() -> None:
    tx = TxRecord("g", Mode.WORKFLOW, "trip@2", "f", TxStatus.SUBMITTED, created_at=T0)
    ops = [  # as the log lists them: the signals first
        op("go#late", OpStatus.SUCCEEDED, OpName.SIGNAL, output="no", target="go"),
        op("go#boss", OpStatus.SUCCEEDED, OpName.SIGNAL, output="yes", target="go"),
        op("@result", OpStatus.SUCCEEDED, output={"ok": True}),
        op("0007.@wait", OpStatus.RETRY_WAIT, next_at=T0 + 30, payload=entry("wait", "more")),
        op("0006.@sleep", OpStatus.RETRY_WAIT, next_at=T0 + 100 * 365 * 86400.0),
        op("0005.@wait", OpStatus.SUCCEEDED, output={"timeout": True}, payload=entry("wait", "ok")),
        op(
            "0004.@wait",
            OpStatus.SUCCEEDED,
            output={"signal": "go#boss", "value": "yes"},
            payload=entry("wait", "go"),
        ),
        op("0003.@pivot", OpStatus.SUCCEEDED, output=True, payload=entry("pivot")),
        op("0002.@undo", OpStatus.SUCCEEDED, payload=entry("undo", digest="1")),
        op("0001.pay", OpStatus.SUCCEEDED, OpName.COMPENSATE),
        op(
            "0001.pay",
            OpStatus.RETRY_WAIT,
            attempts=2,
            next_at=T0 + 5,
            payload=entry("step", "pay"),
            error="timeout",
        ),
        op("0008.@now", OpStatus.SUCCEEDED, output=T0 + 0.25, payload=entry("now")),
        op("0009.@patch", OpStatus.SUCCEEDED, output=True, payload=entry("patch", "fix-1")),
    ]
    assert rows(tx, ops) == [
        ("0001", "step pay", "retry_wait", "retry at 2027-01-15 08:00:05 UTC"),
        ("0001", "compensate pay", "succeeded", ""),
        ("0002", "compensate since position 1", "succeeded", ""),
        ("0003", "pivot", "succeeded", "forward only from here"),
        ("0004", 'wait for "go"', "signalled", 'go#boss = "yes"'),
        ("0005", 'wait for "ok"', "timed out", ""),
        ("0006", "sleep", "asleep", "no timeout"),
        ("0007", 'wait for "more"', "waiting", "until 2027-01-15 08:00:30 UTC"),
        ("0008", "time, recorded", "succeeded", "= 2027-01-15 08:00:00.250 UTC"),
        ("0009", 'patch "fix-1"', "succeeded", ""),
        ("", "return value", "succeeded", '= {"ok": true}'),
        ("", 'signal "go"', "taken", 'go#boss = "yes"; taken by the wait at 0004'),
        ("", 'signal "go"', "not taken", 'go#late = "no"; kept for a wait'),
    ]
    assert [o.branch for o in journal.untaken(ops)] == ["go#late"]
    ended = TxRecord("g", Mode.WORKFLOW, "trip@2", "f", TxStatus.FAILED, ended_at=T0 + 9)
    assert rows(ended, ops)[-1][3] == 'go#late = "no"; never taken'


def test_a_long_value_is_cut_to_one_short_line() -> None:
    shown = journal.value({"text": "x" * 200})
    assert len(shown) == journal.VALUE_CHARS and shown.endswith("…")
