"""Log lines: JSON with the transaction's fields when not on a terminal, text otherwise."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from legato import Coordinator, Failure, RetryPolicy, Saga, StepContext
from legato.observe import logs

FAST = RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.01)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("legato")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


async def test_json_lines_carry_gid_branch_op_attempt_and_trace_id(
    log_url: str, restore_logging: None
) -> None:
    out = io.StringIO()  # not a terminal: JSON
    logs.configure(stream=out, level="DEBUG")

    def flaky(ctx: StepContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("connection reset")
        raise Failure("declined")

    saga = Saga("logged")
    saga.step("hotel", action=lambda ctx: None, compensate=lambda ctx: None)
    saga.step("pay", action=flaky, retry=FAST)
    async with Coordinator(log_url, hooks=[logs.TxLogging()]) as c:
        await (await c.submit(saga, None, gid="log-1")).result(timeout=10)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    unknown = next(r for r in lines if r.get("outcome") == "unknown")
    assert unknown["level"] == "WARNING" and unknown["logger"] == "legato.tx"
    assert (unknown["gid"], unknown["branch_id"], unknown["op"], unknown["attempt"]) == (
        "log-1",
        "pay",
        "action",
        1,
    )
    assert "connection reset" in unknown["message"]
    assert len(unknown["trace_id"]) == 32 and "time" in unknown
    failed = next(r for r in lines if r.get("outcome") == "failed")
    assert failed["level"] == "INFO" and failed["attempt"] == 2
    ended = next(r for r in lines if r.get("status") == "failed" and "branch_id" not in r)
    assert ended["gid"] == "log-1" and ended["reason"] == "pay failed: declined"
    # one trace id for every line of the transaction
    assert len({r["trace_id"] for r in lines if r.get("gid") == "log-1"}) == 1


def test_text_on_a_terminal_or_when_asked(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure(stream=out, json_output=False)
    logging.getLogger("legato.tx").warning(
        "pay action unknown", extra={"gid": "g-9", "branch_id": "pay", "op": "action"}
    )
    text = " ".join(out.getvalue().split())  # rich wraps at the console's width
    assert "WARNING pay action unknown [gid=g-9 branch_id=pay op=action]" in text
    assert not text.lstrip().startswith("{")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_when_asked_even_on_a_terminal(restore_logging: None) -> None:
    out = Tty()
    logs.configure(stream=out, log_format="json")
    logging.getLogger("legato.tx").error("stuck", extra={"gid": "g-1"})
    assert json.loads(out.getvalue())["gid"] == "g-1"


def test_the_environment_chooses_json_for_the_whole_process() -> None:
    # the process reads its settings once, so a process of its own is started with them
    code = (
        "import io, logging; from legato.observe import logs\n"
        "class Tty(io.StringIO):\n"
        "    def isatty(self): return True\n"
        "out = Tty(); logs.configure(stream=out)\n"
        "logging.getLogger('legato.tx').error('stuck', extra={'gid': 'g-1'})\n"
        "print(out.getvalue(), end='')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "LEGATO_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout)["gid"] == "g-1"
