"""Structured logs: every line about a transaction carries its gid, and about an op its
branch_id, op and attempt, plus the trace id that joins it to the transaction's
trace.

``configure()`` sets the ``legato`` loggers up the way ``legato serve`` does:
human-readable (rich) on a terminal, one JSON object per line when the output is
not a terminal or when asked (``log_format="json"``; by default, this process's
``LEGATO_LOG_FORMAT``); the servers pass ``SERVER_LOGGERS``, so that uvicorn's lines
(startup, errors) come out the same way. ``TxLogging`` is the
hook that writes the coordinator's lines: attempts that failed or whose outcome
is unknown, transactions that ended or became stuck (each attempt's success
too, at DEBUG).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from .._hooks import Hooks
from .._model import OpName, TxRecord
from .._process_settings import LogFormat, process_settings

if TYPE_CHECKING:
    from ..modes._core import TxState

logger = logging.getLogger("legato.tx")

# the loggers ``legato serve`` and ``legato dashboard`` send through one handler
SERVER_LOGGERS = ("legato", "uvicorn")

FIELDS = ("gid", "branch_id", "op", "attempt", "trace_id", "mode", "status")


def trace_id_of(tx: TxRecord) -> str:
    """The transaction's trace id: from the trace context kept in the log, else the one
    derived from its gid (what participants receive when tracing is off)."""
    from .tracing import gid_traceparent, stored_trace_id

    return stored_trace_id(tx.options.get("trace")) or gid_traceparent(tx.gid).split("-")[1]


class TxLogging(Hooks):
    """Log lines for what happens to transactions, with their fields as ``extra``."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self.log = log

    def after_op(
        self,
        tx: TxRecord,
        branch: str,
        op: OpName,
        attempt: int,
        outcome: str,
        seconds: float,
        detail: object,
    ) -> None:
        level = {"ok": logging.DEBUG, "failed": logging.INFO, "ongoing": logging.DEBUG}.get(
            outcome, logging.WARNING
        )
        if not self.log.isEnabledFor(level):
            return
        extra = _fields(tx, branch_id=branch, op=str(op), attempt=attempt)
        extra["outcome"] = outcome
        extra["took_ms"] = round(seconds * 1000, 3)
        if outcome == "ok":
            self.log.log(level, "%s %s succeeded", op, branch, extra=extra)
        else:
            self.log.log(level, "%s %s %s: %s", op, branch, outcome, detail, extra=extra)

    def after_write(self, tx: TxRecord, state: TxState, before: TxState) -> None:
        if state.status.ended and not before.status.ended:
            # one line per transaction: DEBUG for a success, INFO for a rollback
            level = logging.INFO if state.status.value == "failed" else logging.DEBUG
            if self.log.isEnabledFor(level):
                extra = _fields(tx, status=str(state.status))
                if state.reason:
                    extra["reason"] = state.reason
                self.log.log(level, "%s %s %s", tx.mode, tx.gid, state.status, extra=extra)
        if state.stuck and not before.stuck:
            extra = _fields(tx, status=str(state.status))
            extra["stuck"] = state.stuck
            self.log.error("%s %s is stuck: %s", tx.mode, tx.gid, state.stuck, extra=extra)

    def on_resumed(self, tx: TxRecord, previous: str | None) -> None:
        if previous is not None:
            self.log.warning(
                "took %s over from %s, whose lease expired",
                tx.gid,
                previous,
                extra=_fields(tx, previous_owner=previous),
            )


def _fields(tx: TxRecord, **more: Any) -> dict[str, Any]:
    return {"gid": tx.gid, "mode": str(tx.mode), "trace_id": trace_id_of(tx), **more}


class _TerminalFormatter(logging.Formatter):
    """The message, then the transaction's fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = [f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None)]
        return f"{text}  [{' '.join(pairs)}]" if pairs else text


def _without_colours(record: logging.LogRecord) -> bool:
    """uvicorn gives some lines a copy of their message with terminal colour codes
    (``color_message``): a JSON line would carry it as a field."""
    record.__dict__.pop("color_message", None)
    return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def configure(
    *,
    json_output: bool | None = None,
    log_format: LogFormat | None = None,
    level: str | int = "INFO",
    stream: IO[str] | None = None,
    loggers: Sequence[str] = ("legato",),
) -> logging.Handler:
    """Send the lines of ``loggers`` (and theirs below them: ``legato.tx``...) to
    ``stream`` (stderr): JSON when ``json_output``; when it is None, as ``log_format``
    says (default: this process's ``LEGATO_LOG_FORMAT``), ``auto`` being JSON unless the
    stream is a terminal; rich text otherwise. Returns the handler."""
    out = stream or sys.stderr
    if json_output is None:
        if log_format is None:
            log_format = process_settings().log_format
        json_output = log_format == "json" or (log_format == "auto" and not out.isatty())
    handler: logging.Handler
    if json_output:
        handler = logging.StreamHandler(out)
        handler.setFormatter(json_formatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=out), show_path=False, rich_tracebacks=True)
        handler.setFormatter(_TerminalFormatter("%(message)s"))
    handler.addFilter(_without_colours)
    setattr(handler, "_legato", True)  # noqa: B010  (marks the handler this function owns)
    for name in loggers:
        root = logging.getLogger(name)
        for old in [h for h in root.handlers if getattr(h, "_legato", False)]:
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level if isinstance(level, int) else level.upper())
        root.propagate = False
    return handler
